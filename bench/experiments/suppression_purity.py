"""How pure can the suppression cut of multistage outlier suppression get on FER2013's real noise?
(issue 25's unmet target: the discarded hard triplets should hold a truly mislabelled image at
least twice as often as the mined triplets overall.)

Offline, no training: reads the batch-hard runs of ``experiment_real_noise.py`` that were recorded
with ``--record-scores`` (every visit's ``head``, ``margin`` and ``rank`` score and logits,
``runs/<arm>_s<seed>/visit_scores.parquet``) and the work folder's fixed, out-of-sample scores, and
measures the share of truly mislabelled images (the training images' FERPlus votes, never
PublicTest) among the images a cut would suppress, for cuts of 1-30% and for every score and a few
simple combinations, over all images and within each label. Two ways:

* ``online`` replays each run's visits in order and applies the cut exactly as
  ``curate finetune --exclude-suspects`` does (``curate.train.suspicion``: at every step the
  ``share`` of the images visited so far with the highest mean score over their earlier visits,
  ranked over all images, ``global``, or within each label, ``pc``; suppressed from their next
  visit on). Its precision is that of the suppressed ANCHORS (one suppressed triplet per suppressed
  visit), so ``ratio`` = precision / share mislabelled among all visits (= all mined anchors) is
  the ``ratio_bad_anchor`` a run with that score and share would get on the same trajectory
  (ignoring the boundary's few drops). The replay of the run's own score at its own share
  reproduces the run's suppressed triplets (checked, printed as ``replay check``). Caveat: the
  trajectory is the recorded run's, where the head score's suppressed images left the
  classification loss and so keep a high head score; another score would have steered another run.
* ``static`` ranks the images by their mean score over the whole run (``_w``: each image weighted
  by its visits, as the suppressed triplets are).

Scores: running (mean over visits): ``head`` (the default ``--suspect-score``, negated area under
the margin), ``margin`` (in-batch distance margin), ``rank`` (their in-batch rank mean), ``1-p``
(1 - softmax p(label) of the head); fixed, from the experiment's base network ``screener_bh``
(trained on 8,001 other Training images, so out-of-sample): ``label_screen`` (``curate screen``'s
label suspicion, the ``--suspect-prior``), ``base_head`` (its head's best other log-probability
minus the label's), ``probe`` (1 - p(label) of a 5-fold linear probe on its embeddings),
``knn30`` (share of the 30 nearest embeddings with another label). Combinations, on percentile
ranks among the images visited so far: ``a+b`` (rank mean), ``a*b`` (rank product, geometric
mean), ``min(a,b)`` (agreement: suspect by both), ``vote2(a,b,c)`` (in the top share of at least
two of the three; its suppressed share is then not the nominal one and is printed).

Also the structure of the noise: how many FERPlus votes a wrong label's own class got, and the
share of the clearly wrong labels (own class <= 1 vote of 10), of the borderline wrong ones and
of the clean ones that each cut flags::

    PYTHONPATH=. nice -n 10 python -m bench.experiments.suppression_purity --work WORK \\
        --arms full_suppress_head_pos,full_suppress_head_pos_once,full_suppress_head_pos_prior,\\
full_suppress_head_pos_prior_once,full_suppress_head_pos_s10,full_suppress_head_pos_once_s10,\\
full_suppress_head_pos_prior_once_s10 --seeds 0,1,2,3,4 \\
        --fixed-cache SCRATCH/purity_fixed.parquet \\
        --out bench/results/issue25_suppression_purity.txt

(WORK: the work folder of ``experiment_real_noise.py`` holding those arms' runs; ``.online.csv``
beside the output: the replayed cuts, mean and sd over seeds, per arm, score, rank and share.
Measured 2026-12-06, about 40 s per run on the shared CPU; what it found: ``docs/finetune.md``,
fourth round.)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.ferplus import FERPLUS_TO_FER, SHARED
from bench.experiments.suspicion_scores import base_probabilities, out_of_sample_scores

SHARES = (0.01, 0.02, 0.05, 0.10, 0.20, 0.30)
RUNNING = ("head", "margin", "rank", "1-p")
FIXED = ("label_screen", "base_head", "probe", "knn30")
COMBOS: dict[str, tuple[str, tuple[str, ...]]] = {
    "head+label_screen": ("mean", ("head", "label_screen")),  # = --suspect-prior
    "head+margin": ("mean", ("head", "margin")),
    "head+knn30": ("mean", ("head", "knn30")),
    "head+probe": ("mean", ("head", "probe")),
    "head+base_head": ("mean", ("head", "base_head")),
    "1-p+label_screen": ("mean", ("1-p", "label_screen")),
    "head+label_screen+knn30": ("mean", ("head", "label_screen", "knn30")),
    "head*label_screen": ("prod", ("head", "label_screen")),
    "min(head,label_screen)": ("min", ("head", "label_screen")),
    "min(head,label_screen,knn30)": ("min", ("head", "label_screen", "knn30")),
    "vote2(head,label_screen,knn30)": ("vote", ("head", "label_screen", "knn30")),
    "vote2(head,margin,label_screen)": ("vote", ("head", "margin", "label_screen")),
}
ORACLE = "label_rate(oracle)"
EMOTION_VOTES = {fer: plus for plus, fer in FERPLUS_TO_FER.items()}


def pct(x: np.ndarray) -> np.ndarray:
    """Percentile ranks in ``(0, 1]`` (ties averaged)."""
    from scipy.stats import rankdata

    return rankdata(x) / max(len(x), 1)


def combine(kind: str, ranks: list[np.ndarray]) -> np.ndarray:
    if kind == "mean":
        return np.mean(ranks, axis=0)
    if kind == "prod":
        return np.exp(np.mean(np.log(ranks), axis=0))
    if kind == "min":
        return np.min(ranks, axis=0)
    raise ValueError(kind)


def by_share(rows: pd.DataFrame, value: str) -> pd.DataFrame:
    """Mean ``value`` per score (rows, in order of appearance) and cut (columns "1%", ...)."""
    t = rows.groupby(["score", "share"], sort=False)[value].mean().unstack("share")
    t.columns = [f"{int(c * 100)}%" for c in t.columns]
    return t


def top_share(x: np.ndarray, share: float, groups: np.ndarray | None) -> np.ndarray:
    """Bool: at or above the cut of the ``share`` highest (``suspicion_cut``'s rule: the k-th
    largest value, ties included), over all or within each group."""
    if groups is not None:
        out = np.zeros(len(x), bool)
        for g in np.unique(groups):
            at = groups == g
            out[at] = top_share(x[at], share, None)
        return out
    k = max(1, int(round(share * len(x))))
    return x >= np.partition(x, len(x) - k)[len(x) - k]


def fixed_scores(
    work: Path, images: pd.DataFrame, classes: list[str], cache: Path | None
) -> pd.DataFrame:
    """``base_head``, ``probe``, ``knn30`` of the base network per image of the build (by
    image_id); kept in ``cache`` when given."""
    if cache is not None and cache.is_file():
        return pd.read_parquet(cache)
    y = images["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    paths = images["path"].tolist()
    pb = base_probabilities(work / "screener_bh", paths, classes)
    scores = out_of_sample_scores(work / "screener_bh", paths, y, pb)
    out = pd.DataFrame({"image_id": images["image_id"].to_numpy(), **scores})
    if cache is not None:
        out.to_parquet(cache)
    return out


class Run:
    """One recorded run: its visits in order, per-visit running scores, per-image fixed ones."""

    def __init__(self, work: Path, arm: str, seed: int, fixed: pd.DataFrame) -> None:
        self.name = f"{arm}_s{seed}"
        run = work / "runs" / self.name
        v = pd.read_parquet(run / "visit_scores.parquet")
        images = pd.read_parquet(work / "builds" / f"orig_train_s{seed}" / "images.parquet")
        images = images.set_index("image_id")
        classes = sorted(images["label"].astype(str).unique())
        ids = np.unique(v["image_id"].to_numpy())
        self.ids = ids
        self.n = len(ids)
        self.row = np.searchsorted(ids, v["image_id"].to_numpy())  # visit -> image row
        self.step = v["step"].to_numpy()
        self.labels = images.loc[ids, "label"].astype(str).to_numpy()
        self.codes = pd.Index(classes).get_indexer(self.labels)
        self.bad = images.loc[ids, "mislabelled"].astype(str).str.lower().eq("true").to_numpy()
        self.paths = images.loc[ids, "path"].astype(str).to_numpy()
        logits = v[[f"logit_{j}" for j in range(len(classes))]].to_numpy()
        z = np.exp(logits - logits.max(1, keepdims=True))
        z /= z.sum(1, keepdims=True)
        self.running = {s: v[s].to_numpy(float) for s in ("head", "margin", "rank")}
        self.running["1-p"] = 1 - z[np.arange(len(v)), self.codes[self.row]]
        sus = pd.read_parquet(work / "screens" / f"bh_once_s{seed}" / "images_suspect.parquet")
        ls = sus.set_index("image_id")["suspicion"].astype(float).reindex(ids).to_numpy()
        ls = np.where(np.isfinite(ls), ls, np.nanmedian(ls))
        f = fixed.set_index("image_id").reindex(ids)
        self.fixed = {"label_screen": ls, **{k: f[k].to_numpy(float) for k in FIXED[1:]}}
        # reference only, from the evaluation labels: each image's label's share of wrong labels
        # (random order within a label): what picking labels alone gives
        rate = np.bincount(self.codes, self.bad, len(classes)) / np.maximum(
            np.bincount(self.codes, minlength=len(classes)), 1
        )
        jitter = np.random.default_rng(seed).random(self.n) * 1e-6
        self.fixed[ORACLE] = rate[self.codes] + jitter
        mined = pd.read_parquet(run / "mined_triplets.parquet")
        sup = mined[mined["suppressed"]]
        self.recorded_suppressed = set(zip(sup["step"], sup["anchor"], strict=True))
        cfg = pd.read_json(run / "run.json", typ="series")["params"]
        self.share = float(cfg["suspect_share"])
        self.score = str(cfg["suspect_score"])
        self.per_class = bool(cfg["suspect_per_class"])
        self.has_prior = cfg.get("suspect_prior") is not None
        self.visits_bad = self.bad[self.row]

    def static_means(self) -> dict[str, np.ndarray]:
        cnt = np.bincount(self.row, minlength=self.n).astype(float)
        out = {s: np.bincount(self.row, x, self.n) / cnt for s, x in self.running.items()}
        return {**out, **self.fixed}

    def visits(self) -> np.ndarray:
        return np.bincount(self.row, minlength=self.n).astype(float)


def score_fn(name: str) -> tuple[str, tuple[str, ...]]:
    if name in COMBOS:
        return COMBOS[name]
    return "single", (name,)


def static_flags(
    means: dict[str, np.ndarray], name: str, share: float, groups: np.ndarray | None
) -> np.ndarray:
    kind, parts = score_fn(name)
    if kind == "single":
        return top_share(means[parts[0]], share, groups)
    if kind == "vote":
        votes = sum(top_share(means[p], share, groups).astype(int) for p in parts)
        return votes >= 2
    ranks = [pct(means[p]) for p in parts]
    return top_share(combine(kind, ranks), share, groups)


def online_flags(
    run: Run, name: str, share: float, per_class: bool, min_visits: int = 1
) -> np.ndarray:
    """Per visit: would the cut have suppressed it (``curate finetune``'s rule, replayed)."""
    kind, parts = score_fn(name)
    total = {p: np.zeros(run.n) for p in parts if p in RUNNING}
    visits = np.zeros(run.n)
    out = np.zeros(len(run.step), bool)
    bounds = np.flatnonzero(np.diff(run.step)) + 1
    for sl in np.split(np.arange(len(run.step)), bounds):
        rows = run.row[sl]
        seen = visits > 0
        ok = visits >= min_visits
        if ok.any():
            vals = {}
            for p in parts:
                vals[p] = total[p][seen] / visits[seen] if p in RUNNING else run.fixed[p][seen]
            groups = run.codes[seen] if per_class else None
            elig = ok[seen]
            if kind == "single":
                flags = _cut(vals[parts[0]], elig, share, groups)
            elif kind == "vote":
                flags = sum(_cut(vals[p], elig, share, groups).astype(int) for p in parts) >= 2
            else:
                flags = _cut(combine(kind, [pct(vals[p]) for p in parts]), elig, share, groups)
            full = np.zeros(run.n, bool)
            full[np.flatnonzero(seen)] = flags
            out[sl] = full[rows]
        for p in total:
            np.add.at(total[p], rows, run.running[p][sl])
        np.add.at(visits, rows, 1.0)
    return out


def _cut(x: np.ndarray, elig: np.ndarray, share: float, groups: np.ndarray | None) -> np.ndarray:
    """Among ``x`` (the seen images), the eligible ones at or above the cut over the eligible."""
    out = np.zeros(len(x), bool)
    if groups is None:
        groups = np.zeros(len(x), np.int64)
    for g in np.unique(groups):
        at = np.flatnonzero((groups == g) & elig)
        if len(at):
            out[at] = top_share(x[at], share, None)
    return out


def fmt_table(d: pd.DataFrame, title: str) -> list[str]:
    return [title, d.to_string(float_format=lambda x: f"{x:.3f}"), ""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--arms", default="full_suppress_head_pos,full_suppress_head_pos_once")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument(
        "--votes", type=Path, default=SHARED / "ferplus" / "ferplus_votes_train_val.csv"
    )
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--fixed-cache", type=Path, default=None, help="parquet keeping the base network's scores"
    )
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = args.arms.split(",")
    all_images = pd.read_parquet(
        args.work / "builds" / f"orig_train_s{seeds[0]}" / "images.parquet"
    )
    classes = sorted(all_images["label"].astype(str).unique())
    fixed = fixed_scores(args.work, all_images, classes, args.fixed_cache)
    votes = pd.read_csv(args.votes)
    votes["key"] = votes["path"].str.split("/").str[-1]
    votes = votes.drop_duplicates("key").set_index("key")
    names = list(RUNNING) + list(FIXED) + list(COMBOS) + [ORACLE]
    lines: list[str] = [
        "Suppression purity on FER2013's real noise (issue 25), from the recorded runs of "
        f"{', '.join(arms)}, seeds {args.seeds} (mean over seeds).",
        "precision = share truly mislabelled (FERPlus) among the suppressed; ratio = precision / "
        "share mislabelled among all visits (mined anchors); 2x is the target.",
        "",
    ]
    online_rows, static_rows, label_rows, grade_rows, check = [], [], [], [], []
    for arm in arms:
        for seed in seeds:
            run = Run(args.work, arm, seed, fixed)
            print(f"{run.name}: {run.n} images, {len(run.step)} visits", flush=True)
            base_v = float(run.visits_bad.mean())
            w = run.visits()
            key = [os.path.basename(p) for p in run.paths]
            vv = votes.reindex(key)
            own = np.array(
                [vv[f"votes_{EMOTION_VOTES[lab]}"].iloc[i] for i, lab in enumerate(run.labels)]
            )
            clear = run.bad & (own <= 1)  # clearly wrong: own class <= 1 of 10 votes
            border = run.bad & (own >= 2)
            # the replay of the run's own rule
            own_name = run.score if not run.has_prior else "head+label_screen"
            flags = online_flags(run, own_name, run.share, run.per_class)
            got = set(zip(run.step[flags], run.ids[run.row[flags]], strict=True))
            check.append(
                f"  {run.name}: replayed {len(got)} suppressed anchors, recorded "
                f"{len(run.recorded_suppressed)}, identical {len(got & run.recorded_suppressed)}"
            )
            means = run.static_means()
            for name in names:
                for pc in (False, True):
                    groups = run.codes if pc else None
                    for q in SHARES:
                        f = online_flags(run, name, q, pc)
                        fb = run.visits_bad[f]
                        vis_codes = run.codes[run.row]
                        base_l = np.bincount(vis_codes, run.visits_bad, len(classes)) / np.maximum(
                            np.bincount(vis_codes, minlength=len(classes)), 1
                        )
                        mix = float(base_l[vis_codes[f]].mean()) if f.any() else np.nan
                        on = {
                            "arm": arm,
                            "seed": seed,
                            "score": name,
                            "rank": "pc" if pc else "global",
                            "share": q,
                            "suppressed_share": float(f.mean()),
                            "precision": float(fb.mean()) if f.any() else np.nan,
                            "base": base_v,
                            "label_mix": mix,
                        }
                        online_rows.append(on)
                        s = static_flags(means, name, q, groups)
                        static_rows.append(
                            {
                                "arm": arm,
                                "seed": seed,
                                "score": name,
                                "rank": "pc" if pc else "global",
                                "share": q,
                                "flagged_share": float(s.mean()),
                                "precision": float(run.bad[s].mean()),
                                "precision_w": float((w * run.bad)[s].sum() / w[s].sum()),
                                "base": float(run.bad.mean()),
                                "base_w": float((w * run.bad).sum() / w.sum()),
                            }
                        )
                        if name in ("head", "head+label_screen", "label_screen", "1-p"):
                            grade_rows.append(
                                {
                                    "arm": arm,
                                    "seed": seed,
                                    "score": name,
                                    "rank": "pc" if pc else "global",
                                    "share": q,
                                    "recall_clear": float(s[clear].mean()),
                                    "recall_border": float(s[border].mean()),
                                    "recall_clean": float(s[~run.bad].mean()),
                                    "own_votes_flagged_clean": float(own[s & ~run.bad].mean()),
                                }
                            )
                        if q == 0.2 and not pc and name in ("head", "head+label_screen"):
                            for c in range(len(classes)):
                                at = run.codes == c
                                vis = run.codes[run.row] == c
                                label_rows.append(
                                    {
                                        "arm": arm,
                                        "seed": seed,
                                        "score": name,
                                        "label": classes[c],
                                        "base_visits": float(run.visits_bad[vis].mean()),
                                        "share_of_suppressed": float(
                                            f[vis].sum() / max(f.sum(), 1)
                                        ),
                                        "suppressed_rate": float(f[vis].mean()),
                                        "precision": float(run.visits_bad[vis & f].mean())
                                        if (vis & f).any()
                                        else np.nan,
                                        "clear_wrong_share": float(clear[at].mean()),
                                        "wrong_share": float(run.bad[at].mean()),
                                    }
                                )
                        if q == 0.2 and pc and name in ("head", "head+label_screen"):
                            for c in range(len(classes)):
                                vis = run.codes[run.row] == c
                                label_rows.append(
                                    {
                                        "arm": arm,
                                        "seed": seed,
                                        "score": name + " (pc)",
                                        "label": classes[c],
                                        "base_visits": float(run.visits_bad[vis].mean()),
                                        "share_of_suppressed": float(
                                            f[vis].sum() / max(f.sum(), 1)
                                        ),
                                        "suppressed_rate": float(f[vis].mean()),
                                        "precision": float(run.visits_bad[vis & f].mean())
                                        if (vis & f).any()
                                        else np.nan,
                                    }
                                )
            # warm-up: suppression only from the 2nd / 3rd visit on (--suspect-min-visits 2, 3)
            for mv in (2, 3):
                for name in ("head", "head+label_screen"):
                    f = online_flags(run, name, 0.2, False, mv)
                    online_rows.append(
                        {
                            "arm": arm,
                            "seed": seed,
                            "score": f"{name} min_visits={mv}",
                            "rank": "global",
                            "share": 0.2,
                            "suppressed_share": float(f.mean()),
                            "precision": float(run.visits_bad[f].mean()),
                            "base": base_v,
                        }
                    )
            # per epoch of the default rule (is the first epoch's cut the weak one?)
            f = online_flags(run, "head", 0.2, False)
            steps_per_epoch = (run.step.max() + 1) // 3
            for e in range(3):
                at = run.step // steps_per_epoch == e
                online_rows.append(
                    {
                        "arm": arm,
                        "seed": seed,
                        "score": f"head epoch {e}",
                        "rank": "global",
                        "share": 0.2,
                        "suppressed_share": float(f[at].mean()),
                        "precision": float(run.visits_bad[at & f].mean()),
                        "base": float(run.visits_bad[at].mean()),
                    }
                )
    lines += ["Replay check (the run's own score and share, replayed on its visits):", *check, ""]
    on = pd.DataFrame(online_rows)
    on["ratio"] = on["precision"] / on["base"]
    # what the labels the cut falls on give by themselves (their base rates), and the lift within
    on["label_mix_ratio"] = on["label_mix"] / on["base"]
    on["within_label_lift"] = on["precision"] / on["label_mix"]
    st = pd.DataFrame(static_rows)
    st["ratio_w"] = st["precision_w"] / st["base_w"]
    for arm in arms:
        o = on[on["arm"] == arm]
        lines.append(f"=== {arm}: base share mislabelled among visits {o['base'].mean():.3f}")
        for kind in ("global", "pc"):
            lines += fmt_table(
                by_share(o[(o["rank"] == kind) & o["score"].isin(names)], "ratio"),
                f"ONLINE (the finetune rule replayed), ratio of suppressed-anchor precision to base, "
                f"rank {kind}:",
            )
            lines += fmt_table(
                by_share(o[(o["rank"] == kind) & o["score"].isin(names)], "precision"),
                f"ONLINE precision (share mislabelled among suppressed anchors), rank {kind}:",
            )
        dec = (
            o[(o["rank"] == "global") & o["score"].isin(names) & o["share"].isin([0.05, 0.1, 0.2])]
            .groupby(["score", "share"], sort=False)[
                ["ratio", "label_mix_ratio", "within_label_lift"]
            ]
            .mean()
            .unstack("share")
        )
        lines += fmt_table(
            dec,
            "ONLINE global: ratio = label_mix_ratio (the base rates of the labels the cut falls "
            "on, / the overall base) x within_label_lift (precision / those base rates):",
        )
        vs = o[o["score"].str.contains("vote2")]
        lines += fmt_table(
            vs.groupby(["score", "rank", "share"])["suppressed_share"].mean().unstack("share"),
            "vote2: share of visits actually suppressed (not the nominal share):",
        )
        extra = o[~o["score"].isin(names)]
        lines += fmt_table(
            extra.groupby("score", sort=False)[
                ["suppressed_share", "precision", "base", "ratio"]
            ].mean(),
            "ONLINE, 20% global: warm-up (--suspect-min-visits) and the default rule per epoch:",
        )
        s = st[st["arm"] == arm]
        for kind in ("global", "pc"):
            lines += fmt_table(
                by_share(s[s["rank"] == kind], "ratio_w"),
                f"STATIC (end-of-run means), visit-weighted ratio, rank {kind} "
                f"(base_w {s['base_w'].mean():.3f}, image base {s['base'].mean():.3f}):",
            )
        best = (
            o[o["score"].isin(names)]
            .groupby(["score", "rank", "share"])["ratio"]
            .agg(["mean", "min", "max"])
            .sort_values("mean", ascending=False)
            .head(12)
        )
        lines += fmt_table(
            best, "ONLINE: the 12 best (score, rank, share) by mean ratio (min/max over seeds):"
        )
    lab = pd.DataFrame(label_rows)
    for arm in arms:
        lines += fmt_table(
            lab[lab["arm"] == arm]
            .groupby(["score", "label"], sort=False)
            .mean(numeric_only=True)
            .drop(columns="seed"),
            f"=== {arm}: per label, ONLINE 20% cut (global and per-label rank):",
        )
    gr = pd.DataFrame(grade_rows)
    gr = gr[gr["rank"] == "global"]
    lines += fmt_table(
        gr.groupby(["arm", "score", "share"], sort=False)
        .mean(numeric_only=True)
        .drop(columns="seed"),
        "STATIC cut over all images: share of the clearly wrong labels (own class <= 1 of 10 "
        "FERPlus votes), the borderline wrong (>= 2) and the clean ones it flags; mean own-class "
        "votes of the clean images it flags:",
    )
    # noise structure over all training images of the subset
    key = [os.path.basename(p) for p in all_images["path"]]
    vv = votes.reindex(key)
    badall = all_images["mislabelled"].astype(str).str.lower().eq("true").to_numpy()
    ownall = np.array(
        [vv[f"votes_{EMOTION_VOTES[lab]}"].iloc[i] for i, lab in enumerate(all_images["label"])]
    )
    ok = np.isfinite(ownall)
    lines += [
        "Noise structure (all images of the subset): own-class FERPlus votes (of 10) of the wrong "
        "labels: "
        + str(pd.Series(ownall[badall & ok]).value_counts().sort_index().astype(int).to_dict()),
        f"  wrong labels {int(badall.sum())} of {len(badall)}; own class <= 1 vote: "
        f"{float((ownall[badall & ok] <= 1).mean()):.3f} of them; clean labels whose own class has "
        f"<= 5 votes: {float((ownall[~badall & ok] <= 5).mean()):.3f} of the clean; mean own-class "
        f"votes of the clean: {float(ownall[~badall & ok].mean()):.2f}",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
        (
            on.groupby(["arm", "score", "rank", "share"], sort=False)[
                ["suppressed_share", "precision", "base", "ratio", "label_mix_ratio"]
            ]
            .agg(["mean", "std"])
            .round(4)
            .pipe(lambda d: d.set_axis([f"{a}_{b}" for a, b in d.columns], axis=1))
            .to_csv(args.out.with_suffix(".online.csv"))
        )
        print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
