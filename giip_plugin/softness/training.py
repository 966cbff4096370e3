"""Training a softness model from trajectories (Cubuk et al.; the thesis's protocol).

1. Rearrangements: ``p_hop`` over a window of ``window`` frames (:func:`.labels.p_hop`); a
   particle rearranges at frame ``t`` when ``p_hop > p_c``, and is *quiet* at ``t`` when
   ``p_hop < p_c`` at every frame within ``quiet`` frames of ``t`` (default: one window), or,
   with ``quiet_side="before"``, at every frame of the ``quiet`` frames up to ``t``: the
   published protocol's "hard" particles, which have not rearranged in a time ``tau_alpha``
   preceding their structural characterisation (Schoenholz et al., Nat. Phys. 2016).
2. Balanced training sets per centre species: ``n_per_class`` rearranging and as many quiet
   (particle, frame) samples (fewer when fewer exist), drawn at random (``seed``) from up to
   ``max_frames`` evenly spaced training frames; the first ``1 - held_out`` of each trajectory's
   frames train, the rest are held out.
3. Features: the structure functions of each sample's particle in its frame.
4. A linear SVM (scikit-learn ``LinearSVC``) on standardised features, ``C`` chosen by 5-fold
   cross-validation over ``Cs``; the cross-validated accuracy is reported.
5. Held out: the fraction of rearranging particles with ``S > 0`` and of quiet ones with
   ``S < 0`` on the held-out frames, and ``P_R(S)``, the fraction of particles rearranging against
   softness.
"""
from __future__ import annotations

import numpy as np

from .features import StructureFunctions
from .labels import DEFAULT_P_C, p_hop
from .model import SoftnessModel

__all__ = ["train", "train_on_labels", "rearrangement_labels", "d2min_labels", "DEFAULT_CS"]

DEFAULT_CS = (0.001, 0.01, 0.1, 1.0, 10.0)


QUIET_SIDES = ("both", "before")


def rearrangement_labels(positions, window: int, p_c: float = DEFAULT_P_C, quiet: int | None = None,
                         quiet_side: str = "both"):
    """``(frames, rearranging, quiet, ph)``: the frames ``t`` with a full window, boolean arrays
    ``(len(frames), N)`` of rearranging and quiet particles, and ``p_hop`` itself. Quiet:
    ``p_hop < p_c`` over ``[t - quiet, t + quiet]`` (``quiet_side="both"``) or over
    ``[t - quiet, t]`` (``"before"``); frames whose interval leaves the labelled frames are never
    quiet."""
    if quiet_side not in QUIET_SIDES:
        raise ValueError(f"quiet_side must be one of {QUIET_SIDES}, got {quiet_side!r}")
    ph = p_hop(positions, window)
    h = int(window) // 2
    frames = np.arange(h, h + len(ph))
    q = int(window) if quiet is None else int(quiet)
    if q < 0:
        raise ValueError(f"quiet must be >= 0 frames, got {q}")
    if q >= len(ph):
        raise ValueError(f"the quiet interval ({q} frames) is not shorter than the {len(ph)} labelled frames: "
                         "a shorter quiet time or a longer trajectory")
    above = ph > p_c
    from scipy.ndimage import maximum_filter1d

    edge = np.zeros(len(ph), dtype=bool)
    edge[:q] = True  # the interval before t leaves the trajectory
    if quiet_side == "both":
        runmax = maximum_filter1d(ph, size=2 * q + 1, axis=0, mode="nearest")  # over [t - q, t + q]
        edge[len(ph) - q:] = True
    else:
        runmax = maximum_filter1d(ph, size=q + 1, axis=0, origin=q // 2, mode="nearest")  # over [t - q, t]
    calm = runmax < p_c
    calm[edge] = False
    return frames, above, calm, ph


def d2min_labels(d2, lag: int, threshold: float):
    """``(frames, rearranging, quiet, d2)`` from D2min arrays ``(n_frames - lag, N)`` (frame ``t``
    of row ``k`` is ``k + lag``): the structure at ``t - lag`` rearranges when ``D2min > threshold``
    and is quiet when ``D2min < threshold`` over ``[t - lag, t + lag]``."""
    from scipy.ndimage import maximum_filter1d

    d2 = np.asarray(d2, dtype=float)
    lag = int(lag)
    frames = np.arange(len(d2))  # the frame whose structure is labelled: t - lag
    up = d2 > threshold
    calm = maximum_filter1d(d2, size=2 * lag + 1, axis=0, mode="nearest") < threshold
    return frames, up, calm, d2


def train_on_labels(trajectories, features, d2min_arrays, lag, threshold, **kw):
    """:func:`train` with D2min labels (:func:`d2min_labels`) instead of ``p_hop``."""
    sets = [d2min_labels(d, lag, threshold) for d in d2min_arrays]
    return train(trajectories, features, label_sets=sets, **kw)


def train(trajectories, features: StructureFunctions, *, window: int | None = None, p_c: float = DEFAULT_P_C,
          quiet: int | None = None, quiet_side: str = "both", centers=None, n_per_class: int = 6000,
          held_out: float = 0.3,
          Cs=DEFAULT_CS, seed: int = 0, progress: bool = False, log=None, labels_info: dict | None = None,
          provenance: dict | None = None, label_sets=None, max_frames: int = 40, held_out_frames: int = 10):
    """Train a :class:`SoftnessModel` (see the module docstring).

    Parameters
    ----------
    trajectories : list of :class:`~giip_plugin.softness.labels.Trajectory`
    features : StructureFunctions
    window : int
        ``p_hop`` window in frames (even).
    max_frames : int
        Training samples come from at most this many frames of each trajectory, evenly spaced
        (each frame costs one neighbour list out to the largest radial centre).
    held_out_frames : int
        The held-out figures use every particle of at most this many evenly spaced held-out frames
        of each trajectory (default 10; at low temperatures rearrangements are rare, and more
        frames give the fraction with ``S > 0`` a smaller statistical error).
    label_sets : list, optional
        Per trajectory ``(frames, rearranging, quiet, value)`` instead of ``p_hop`` labels (e.g.
        :func:`d2min_labels`).
    p_c : float
        Rearrangement threshold of ``p_hop`` (length units squared; 0.2 for Kob-Andersen).
    quiet, quiet_side : int, str
        Quiet particles (:func:`rearrangement_labels`): ``p_hop < p_c`` within ``quiet`` frames
        (default one window) on both sides of the frame, or (``"before"``) in the ``quiet`` frames
        up to it.
    centers : species to train a hyperplane for (default: every species of ``features``).
    n_per_class, held_out, Cs, seed, progress, log : see the module docstring.

    Returns
    -------
    (SoftnessModel, report) with ``report`` a dict of the held-out figures per centre species.
    """
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    say = log or (lambda m: None)
    centers = tuple(centers) if centers else features.species
    missing = [c for c in centers if c not in features.species]
    if missing:
        raise ValueError(f"centre species {missing} are not among the species {list(features.species)}")
    if not 0 <= held_out < 1:
        raise ValueError(f"held_out must be in [0, 1), got {held_out}")
    if int(held_out_frames) < 1:
        raise ValueError(f"held_out_frames must be >= 1, got {held_out_frames}")
    rng = np.random.default_rng(seed)
    pools = {c: {"rearr": [], "quiet": []} for c in centers}
    test = []
    for k, tr in enumerate(trajectories):
        present = set(np.unique(tr.species).tolist())
        unknown = sorted(present - set(features.species))
        if unknown:
            raise ValueError(f"trajectory {k}: species {unknown} are not among the model's species "
                             f"{list(features.species)} (check --type-names)")
        if label_sets is not None:
            fr, up, calm, ph = label_sets[k]
        elif window is None:
            raise ValueError("give the p_hop window (in frames) or label_sets")
        else:
            fr, up, calm, ph = rearrangement_labels(tr.positions, window, p_c, quiet, quiet_side)
        n_train_frames = int(np.ceil(len(fr) * (1 - held_out)))
        use = np.zeros(len(fr), dtype=bool)
        use[np.unique(np.linspace(0, n_train_frames - 1, min(int(max_frames), n_train_frames)).astype(int))] = True
        say(f"trajectory {k}: {tr.n_frames} frames, {len(fr)} labelled; "
            f"{int(up.sum())} rearranging and {int(calm.sum())} quiet (particle, frame) samples")
        for c in centers:
            col = tr.species == c
            for name, mask in (("rearr", up), ("quiet", calm)):
                t, i = np.nonzero(mask & use[:, None] & col[None, :])
                pools[c][name].append(np.column_stack([np.full(len(t), k), fr[t], i]))
        if n_train_frames < len(fr):
            test.append((k, fr[n_train_frames:], up[n_train_frames:], calm[n_train_frames:]))
    S = len(centers)
    F = features.n_features
    model_arrays = {k: np.zeros((S, F)) for k in ("mean", "scale", "weights")}
    intercept, Cbest, acc, n_used = np.zeros(S), np.zeros(S), np.zeros(S), np.zeros((S, 2), dtype=np.int64)
    feature_cache = {}
    for s, c in enumerate(centers):
        picks = {}
        for name in ("rearr", "quiet"):
            allp = np.concatenate(pools[c][name]) if pools[c][name] else np.zeros((0, 3), dtype=np.int64)
            picks[name] = allp
        n = min(int(n_per_class), len(picks["rearr"]), len(picks["quiet"]))
        if n < 10:
            raise ValueError(f"only {len(picks['rearr'])} rearranging and {len(picks['quiet'])} quiet samples of "
                             f"species {c}: too few to train (a longer trajectory, another threshold (--p-c, --d2min-threshold), or a "
                             "hotter run)")
        chosen = [picks[name][rng.choice(len(picks[name]), n, replace=False)] for name in ("rearr", "quiet")]
        X = _features_of(trajectories, features, np.concatenate(chosen), feature_cache, progress, f"features {c}")
        y = np.concatenate([np.ones(n), np.zeros(n)])
        search = GridSearchCV(make_pipeline(StandardScaler(), LinearSVC(dual="auto", max_iter=20000)),
                              {"linearsvc__C": list(Cs)},
                              cv=StratifiedKFold(5, shuffle=True, random_state=int(seed)), scoring="accuracy")
        search.fit(X, y)
        best = search.best_estimator_
        scaler, svm = best.named_steps["standardscaler"], best.named_steps["linearsvc"]
        model_arrays["mean"][s] = scaler.mean_
        model_arrays["scale"][s] = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
        model_arrays["weights"][s] = svm.coef_[0]
        intercept[s] = svm.intercept_[0]
        Cbest[s] = search.best_params_["linearsvc__C"]
        acc[s] = search.best_score_
        n_used[s] = (n, n)
        say(f"species {c}: {n} rearranging + {n} quiet training particles; C = {Cbest[s]:g}, cross-validated "
            f"accuracy {acc[s]:.3f}")
    model = SoftnessModel(features, centers, model_arrays["mean"], model_arrays["scale"], model_arrays["weights"],
                          intercept, Cbest, acc, n_used, dict(labels_info or {}), dict(provenance or {}))
    report = _held_out(model, trajectories, test, progress, int(held_out_frames)) if test else {}
    for c, r in report.items():
        model.provenance[f"held_out_{c}"] = (f"{100 * r['rearranging_positive']:.1f} % of {r['n_rearranging']} "
                                             f"rearranging particles have S > 0, {100 * r['quiet_negative']:.1f} % of "
                                             f"{r['n_quiet']} quiet ones S < 0")
    return model, report


def _features_of(trajectories, features, samples, cache, progress, desc):
    """Features of (trajectory, frame, particle) samples, one neighbour list per frame."""
    out = np.zeros((len(samples), features.n_features))
    keys = sorted({(int(k), int(t)) for k, t, _ in samples})
    it = keys
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(keys, unit="frame", desc=desc)
    for k, t in it:
        m = (samples[:, 0] == k) & (samples[:, 1] == t)
        idx = samples[m, 2]
        fr = trajectories[k].frames[t]
        out[m] = features.compute(fr.atoms, idx, fr.species)
    return out


def _held_out(model, trajectories, test, progress, max_frames: int):
    """Softness of every particle on up to ``max_frames`` held-out frames of each trajectory."""
    report = {}
    acc = {c: {"S": [], "up": [], "calm": []} for c in model.centers}
    for k, frames, up, calm in test:
        pick = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).astype(int))
        tr = trajectories[k]
        for j in pick:
            fr = tr.frames[frames[j]]
            S = model.softness(fr.atoms, species=fr.species)
            for c in model.centers:
                m = tr.species == c
                acc[c]["S"].append(S[m])
                acc[c]["up"].append(up[j][m])
                acc[c]["calm"].append(calm[j][m])
    for c, d in acc.items():
        if not d["S"]:
            continue
        S, up, calm = (np.concatenate(d[x]) for x in ("S", "up", "calm"))
        edges = np.quantile(S, np.linspace(0, 1, 11))
        which = np.clip(np.searchsorted(edges, S, side="right") - 1, 0, 9)
        pr = [float(up[which == b].mean()) if np.any(which == b) else float("nan") for b in range(10)]
        centres = [float(np.median(S[which == b])) if np.any(which == b) else float("nan") for b in range(10)]
        report[c] = {"n_rearranging": int(up.sum()), "n_quiet": int(calm.sum()),
                     "rearranging_positive": float(np.mean(S[up] > 0)) if up.any() else float("nan"),
                     "quiet_negative": float(np.mean(S[calm] < 0)) if calm.any() else float("nan"),
                     "P_R": {"S": centres, "P_R": pr}, "softness": S, "rearranging": up}
    return report
