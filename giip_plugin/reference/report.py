"""The text report of a reference map: what ``giip info`` prints (:func:`describe`) and its JSON
form (:func:`summary`)."""
from __future__ import annotations

import numpy as np

__all__ = ["summary", "describe"]


def summary(ref) -> dict:
    """Everything ``giip info --json`` prints (JSON-serialisable)."""
    env = ref.environments
    enc = ref.encoding
    ks, err = ref.error_curve
    kk = min(len(err), 30)
    sel = set(ref.selected.tolist())
    table = [{"index": i + 1, "eigenvalue": float(ref.eigenvalues[i]), "r": float(ref.residuals[i]),
              "r2": float(ref.r2[i]), "selected": i in sel} for i in range(len(ref.eigenvalues))]
    tp = ref.training_provenance
    files = list(ref.provenance.get("input_files") or [])
    per_file = []
    for i, f in enumerate(ref.provenance.get("sources") or files):
        per_file.append({"file": f, "n_train": int(np.sum(np.asarray(tp["file_index"]) == i))})
    return {
        "parameters": {
            "r_inner": float(env.r_inner) if env else None,
            "r_outer": float(env.r_outer) if env else None,
            "sigma": float(ref.sigma),
            "species_sigma": dict(env.species_sigma) if env and env.species_sigma else None,
            "species_encoding": enc.mode if enc else None,
            "species": list(enc.species) if enc else [],
            "positive": enc.positive if enc else None,
            "centers": list(env.centers) if env and env.centers is not None else "all",
            "type_names": {str(k): v for k, v in ref.type_names.items()},
            "group": ref.group if ref.group is not None else "none",
            "dim": int(ref.dim),
            "epsilon": float(ref.epsilon),
            "epsilon_info": ref.diffusion.epsilon_info,
            "n_coords_request": ref.n_coords_request,
            "metric": ref.metric_name,
            "metric_parameters": ref.metric.parameters() if ref.metric_name == "soap" else {},
            "default_path": ref.default_path.to_dict() if ref.default_path is not None else None,
            "default_path_text": (ref.default_path.describe() if ref.default_path is not None else
                                  "not measured in this file (measured at its first use)"),
        },
        "training": {
            "n_train": ref.n_train,
            "selection": ref.provenance.get("selection"),
            "frames": ref.provenance.get("frames"),
            "n_frames": ref.provenance.get("n_frames"),
            "per_file": per_file,
            "mean_coordination": float(np.mean(ref.training.coordination())),
            "mean_neighbours": float(np.mean(ref.training.counts)),
        },
        "classes": {
            "selection": ref.class_selection,
            "sizes": ref.classes.sizes.tolist(),
            "diameters": ref.classes.diameters.tolist(),
            "medoids": ref.classes.medoids.tolist(),
            "error_curve": {"n_classes": ks[:kk].tolist(), "largest_diameter": err[:kk].tolist()},
        },
        "diffusion": {
            "epsilon": float(ref.epsilon),
            "n_negative_eigenvalues": int(ref.diffusion.n_negative),
            "selected": (ref.selected + 1).tolist(),
            "table": table,
        },
        "provenance": {k: v for k, v in ref.provenance.items()},
    }


def describe(ref) -> str:
    """Human-readable summary (what ``giip info`` prints)."""
    s = summary(ref)
    p, tr, cl, df = s["parameters"], s["training"], s["classes"], s["diffusion"]
    L = []
    L.append("GIIP reference map" if p["metric"] == "giip" else "SOAP reference map")
    L.append("Parameters")
    if p["metric"] == "soap":
        mp = p["metric_parameters"]
        L.append(f"  metric          SOAP power spectrum ({mp.get('library')} {mp.get('library_version')}), n_max = "
                 f"{mp.get('n_max')}, l_max = {mp.get('l_max')}; distance sqrt(2 - 2 k), k the normalised kernel")
    else:
        L.append("  metric          GIIP (orientation-invariant Gaussian integral inner product)")
    if p["r_inner"] is not None:
        step = "cubic spline" if p["metric"] == "giip" else "shifted cosine"
        L.append(f"  cutoff          weight 1 below r_inner = {p['r_inner']:g}, {step} to 0 at r_outer = {p['r_outer']:g}")
    L.append(f"  sigma           {p['sigma']:g}")
    if p.get("species_sigma"):
        L.append("  species sigma   " + ", ".join(f"{k} = {v:g}" for k, v in p["species_sigma"].items()))
    if p["species_encoding"] is not None:
        enc = p["species_encoding"]
        extra = f", +1 = {p['positive']}" if enc == "sign" else ""
        L.append(f"  species         {enc} ({', '.join(p['species']) or '-'}{extra})")
    centers = p["centers"] if p["centers"] == "all" else ", ".join(p["centers"])
    L.append(f"  centres         {centers}")
    if p["type_names"]:
        L.append("  type names      " + ",".join(f"{k}={v}" for k, v in p["type_names"].items()))
    L.append(f"  group / dim     {p['group']} / {p['dim']}D")
    if p["metric"] == "giip":
        L.append(f"  default path    {p['default_path_text']}")
    info = p["epsilon_info"] or {}
    if info.get("method") == "given":
        how = "given"
    elif info.get("method"):
        how = (f"auto: {info.get('method')}, factor {info.get('factor', 1):g} x median distance to the "
               f"{info.get('k')}-th nearest training environment")
    else:
        how = "?"
    L.append(f"  epsilon         {p['epsilon']:.4g} ({how})")
    L.append("Training set")
    sel = tr["selection"] or {}
    if sel.get("method") == "even":
        how = f"{sel.get('n_train_requested')} requested, spread evenly over frames, seed {sel.get('seed')}"
    elif sel.get("method") == "column":
        how = f"lowest {sel.get('lowest')} + highest {sel.get('highest')} of column {sel.get('column')!r}"
    else:
        how = sel.get("method", "?")
    L.append(f"  environments    {tr['n_train']} ({how}; {sel.get('n_available', '?')} centres available)")
    L.append(f"  neighbours      {tr['mean_neighbours']:.1f} on average (smooth coordination {tr['mean_coordination']:.2f})")
    if tr["n_frames"] is not None:
        L.append(f"  frames          {tr['n_frames']} (selection {tr['frames'] or 'all'})")
    for f in tr["per_file"]:
        L.append(f"    {f['n_train']:6d}  {f['file']}")
    L.append(f"Classes (complete linkage): {len(cl['sizes'])}")
    cs = cl["selection"]
    L.append(f"  chosen by       {cs.get('method')} = {cs.get('value')}" + (f" ({cs['rule']})" if cs.get("rule") else ""))
    L.append("  class     size  diameter  medoid")
    for k, (sz, dm, md) in enumerate(zip(cl["sizes"], cl["diameters"], cl["medoids"])):
        L.append(f"  {k:5d}  {sz:7d}  {dm:8.3f}  {md:6d}")
    ec = cl["error_curve"]
    L.append("  cluster error (largest diameter) by number of classes:")
    L.append("    " + "  ".join(f"{k}:{e:.2f}" for k, e in zip(ec["n_classes"][:15], ec["largest_diameter"][:15])))
    L.append(f"Diffusion map: {len(df['table'])} eigenpairs, {df['n_negative_eigenvalues']} negative; "
             f"selected coordinates {df['selected']} (n_coords = {p['n_coords_request']})")
    L.append("  coord  eigenvalue        r       r^2  selected")
    for row in df["table"]:
        mark = "*" if row["selected"] else ""
        L.append(f"  {row['index']:5d}  {row['eigenvalue']:10.5f}  {row['r']:7.4f}  {row['r2']:8.4f}  {mark}")
    pv = s["provenance"]
    L.append("Provenance")
    L.append(f"  built           {pv.get('date', '?')} with giip-plugin {pv.get('package_version', '?')}")
    if pv.get("command_line"):
        L.append(f"  command         {pv['command_line']}")
    return "\n".join(L)
