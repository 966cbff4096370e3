"""Builds the compiled rotation search at install time (everything else is in pyproject.toml).

The kernel (``giip_plugin/kernels/fused_kernel.c``, plain C without Python's API) is compiled as a
setuptools extension and loaded with ctypes by ``giip_plugin/kernels/fused.py``. Without a working
C compiler the install still succeeds: the kernel is then compiled at first use (``$CC``, else
``cc``), or the PyTorch search is used, with a warning naming the fix.
"""
import runpy
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
INFO = runpy.run_path(str(HERE / "giip_plugin" / "kernels" / "build_info.py"))


class OptionalKernel(build_ext):
    """Compile the kernel with the project's flags and its build identity; a failure is a warning,
    not a failed install."""

    def build_extension(self, ext):
        if self.compiler.compiler_type == "unix":
            ext.extra_compile_args = [f for f in INFO["CFLAGS"] if f != "-fPIC"]
        ext.define_macros = [("GIIP_IDENTITY", '"%s"' % INFO["identity"]())]
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001 - any compiler failure
            print(f"giip-plugin: the compiled rotation search was not built at install time ({exc}); it will be "
                  "compiled at first use (install a C compiler, e.g. apt-get install gcc, or set CC)", file=sys.stderr)

    def get_export_symbols(self, ext):
        return []  # not a Python module: no PyInit_ symbol to export


setup(
    ext_modules=[Extension(f"giip_plugin.kernels.{INFO['INSTALLED_NAME']}",
                           sources=["giip_plugin/kernels/fused_kernel.c"], optional=True,
                           # libm (with glibc's vector math library: -ffast-math vectorises atan2, cos, ...)
                           libraries=["m"])],
    cmdclass={"build_ext": OptionalKernel},
)
