"""How much of a cleaning policy's gain is the training's own spread? Re-train policies with other seeds.

`bench/cleaning_payoff.py` trains every policy once, with one training seed, and its intervals are paired
bootstraps over the test images: they leave out the spread between two trainings of the same data. This
script re-trains chosen policies of a finished setting with other training seeds, each on the very
manifest that setting wrote (`OUT/rR_sS/POLICY/train/manifest.csv`), with the same cheap config, and
prints per seed the test MAE and gender accuracy, the difference to (a) noisy of the same seed, and
their mean and standard deviation over seeds (seed 42 is the payoff bench's own run). Each training is
cached under `OUT/rR_sS/POLICY_seedN/` (a re-run resumes).

    python bench/payoff_seeds.py --out runs/payoff --setting 0:0 --policies noisy,ours_drop --seeds 1,2

--versus A,B also prints A minus B per training seed, their mean with a t-interval over the seeds, and
writes a plot of each seed's pair (OUT/rR_sS/versus_A_B.png).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cleaning_payoff import LABELS, POLICIES, Steps, train_and_predict  # noqa: E402


def _scores(test: pd.DataFrame, pred: pd.DataFrame) -> tuple[float, float]:
    """(age MAE, gender accuracy %) of one model's test predictions."""
    p = test[["path", "age", "gender"]].merge(pred.drop(columns=["age", "gender"]), on="path", validate="one_to_one")
    right = (p["gender_prob"] >= 0.5).astype(int) == p["gender"]  # gender_prob: P(gender 1), as compare reads it
    return float((p["age_pred"] - p["age"]).abs().mean()), float(100 * right.mean())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="cleaning_payoff.py's --out")
    ap.add_argument("--split", type=Path, help="the split the bench ran on (its --split) [default: OUT/split]")
    ap.add_argument("--setting", default="0:0", help="rate:seed of a finished setting")
    ap.add_argument("--policies", default="noisy,ours_drop")
    ap.add_argument("--seeds", default="1,2", help="training seeds besides the bench's own")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--without-noisy", action="store_true", help="do not re-train (a) with the other seeds "
                    "(the differences to (a) come from seeds.csv's rows, empty where it has none)")  # fmt: skip
    ap.add_argument("--versus", metavar="A,B", help="also print A minus B per training seed both have, with "
                    "the mean and a t-interval over seeds (the spread between trainings)")  # fmt: skip
    ap.add_argument("--policy-l1", type=float, help="a check: the L1 penalty the setting's policies trained "
                    "with (the bench's --policy-l1); every seed trains with the setting's own config")  # fmt: skip
    args = ap.parse_args(argv)
    from trainer.config import replace

    rate, seed = args.setting.split(":")
    setting = args.out / f"r{float(rate):g}_s{int(seed)}"
    test_dir = (args.split or args.out / "split") / "test_2_folds_last"
    test = pd.read_csv(test_dir / "manifest.csv", dtype={"content_hash": str}).drop_duplicates("path")
    own_cfg = json.loads((setting / "noisy" / "run" / "metadata.json").read_text())["config"]
    if args.policy_l1 is not None and own_cfg["l1_lambda"] != args.policy_l1:
        ap.error(f"{setting}: its policies trained at L1 {own_cfg['l1_lambda']:g}, not {args.policy_l1:g}")
    base = setting_config(own_cfg, args.threads)
    steps = Steps(setting / "seeds")  # wall times apart from the bench's own steps.json
    policies = args.policies.split(",")
    if "noisy" not in policies and not args.without_noisy:
        policies.insert(0, "noisy")
    rows = []
    for s in [base.seed] + [int(x) for x in args.seeds.split(",")]:
        own = s == base.seed  # the bench's own run, already trained (its (a) too)
        for name in (["noisy"] if own and "noisy" not in policies else []) + policies:
            manifest = pd.read_csv(setting / name / "train" / "manifest.csv", dtype={"content_hash": str})
            run = setting / name if own else setting / f"{name}_seed{s}"
            pred = train_and_predict(name if own else f"{name}_seed{s}", manifest, test_dir, run,
                                     replace(base, seed=s), steps)  # fmt: skip
            mae, acc = _scores(test, pred)
            rows.append({"policy": name, "seed": s, "age_mae": mae, "gender_acc": acc})
    df = _merge(setting / "seeds.csv", pd.DataFrame(rows))
    noisy = df[df["policy"] == "noisy"].set_index("seed")
    df["d_mae"] = df["age_mae"] - df["seed"].map(noisy["age_mae"])
    df["d_acc"] = df["gender_acc"] - df["seed"].map(noisy["gender_acc"])
    df.to_csv(setting / "seeds.csv", index=False)
    print(report(df, args.setting))
    if args.versus:
        a, b = args.versus.split(",")
        print(versus(df, a, b))
        print(f"plot: {plot_versus(df, a, b, setting / f'versus_{a}_{b}.png')}")
    (setting / "seeds_wall_s.json").write_text(json.dumps(steps.times, indent=1))


def setting_config(own: dict, threads: int):
    """The setting's own policy config (its (a)'s run metadata), with this machine's threads: a seed re-trains
    exactly what the bench trained, whatever options the bench was given (--quick, --policy-l1)."""
    from dataclasses import fields

    from trainer.config import TrainConfig

    known = {f.name for f in fields(TrainConfig)} - {"train_path", "val_path", "threads"}
    return TrainConfig(**{k: v for k, v in own.items() if k in known}, threads=threads)


def every_setting(out: Path, split: Path, settings: list[str], policies: list[str], seeds: str, threads: int) -> str:
    """`cleaning_payoff.py --training-seeds`: each finished setting's policies re-trained with `seeds` (at rate
    0 the true labels are (a)'s, so no (e)), (p) against cleanlab's drop by seed where both ran, then the mean
    table over every setting (also written to OUT/seeds_report.md)."""
    for item in settings:
        pols = [p for p in policies if not (float(item.split(":")[0]) == 0 and p == "oracle")]
        argv = ["--out", str(out), "--split", str(split), "--setting", item, "--policies", ",".join(pols),
                "--seeds", seeds, "--threads", str(threads)]  # fmt: skip
        if {"ours_round2_two_sided_ages", "cleanlab_drop"} <= set(pols):
            argv += ["--versus", "ours_round2_two_sided_ages,cleanlab_drop"]
        main(argv)
    text = mean_table(out, settings)
    (out / "seeds_report.md").write_text(text)
    return text + f"\nplot: {plot_means(out, settings, out / 'seeds_means.png')}\n"


def _seed_means(out: Path, item: str) -> tuple[float, int, pd.DataFrame, pd.DataFrame, pd.Series]:
    """(rate, noise seed, mean, sd, count) over the training seeds of each policy in a setting's seeds.csv."""
    rate, seed = float(item.split(":")[0]), int(item.split(":")[1])
    g = pd.read_csv(out / f"r{rate:g}_s{seed}" / "seeds.csv").groupby("policy")[["age_mae", "gender_acc"]]
    return rate, seed, g.mean(), g.std(ddof=1), g.size()


def mean_table(out: Path, settings: list[str]) -> str:
    """Each policy's mean ± sd over the training seeds it has (seeds.csv), and the recovered fraction on the
    means, (noisy - policy) / (noisy - true labels): README's table, from the runs rather than by hand."""
    lines = ["## Mean over training seeds", "",
             "| noise rate, seed | policy | seeds | age MAE | gender acc % | recovered age | recovered gender |",
             "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for item in settings:
        rate, seed, mean, sd, n = _seed_means(out, item)
        ends = mean.reindex(["noisy", "oracle"])
        for name in (p for p in POLICIES if p in mean.index):
            rec = [(ends.loc["noisy", c] - mean.loc[name, c]) / (ends.loc["noisy", c] - ends.loc["oracle", c])
                   for c in ("age_mae", "gender_acc")]  # fmt: skip
            rec = [f"{r:.0%}" if rate > 0 and name not in ("noisy", "oracle") and np.isfinite(r) else "-" for r in rec]
            cell = lambda c: f"{mean.loc[name, c]:.2f}" + (f" ± {sd.loc[name, c]:.2f}" if n[name] > 1 else "")  # noqa: E731
            lines.append(f"| {rate:g}, {seed} | {LABELS[name]} | {n[name]} | {cell('age_mae')} | "
                         f"{cell('gender_acc')} | {rec[0]} | {rec[1]} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def plot_means(out: Path, settings: list[str], path: Path) -> Path:
    """Each policy's mean over training seeds with its spread (± 1 sd), a row of panels per setting, the
    noisy model and the true labels as dashed lines: how far each policy goes from one towards the other."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(settings), 2, figsize=(9, 2.2 + 1.6 * len(settings)), squeeze=False)
    for row, item in zip(axes, settings):
        rate, seed, mean, sd, _ = _seed_means(out, item)
        sd = sd.fillna(0)  # one seed: no spread to draw
        names = [p for p in POLICIES if p in mean.index]
        for ax, col, unit in zip(row, ("age_mae", "gender_acc"), ("age MAE, years", "gender accuracy, %")):
            y = range(len(names))
            ax.errorbar(mean.loc[names, col], y, xerr=sd.loc[names, col], fmt="o", color="C0", capsize=3)
            for end, style in (("noisy", "--"), ("oracle", ":")):
                if end in mean.index:
                    ax.axvline(mean.loc[end, col], color="grey", ls=style, lw=1)
            ax.set_yticks(list(y), [LABELS[n].split(":")[0] for n in names], fontsize=8)
            ax.invert_yaxis()
            ax.set_xlabel(unit, fontsize=8)
            ax.set_title(f"noise rate {rate:g}, noise seed {seed}", fontsize=8)
    fig.text(0.01, 0.01, "mean ± sd over training seeds; dashed: (a) noisy labels, dotted: (e) true labels",
             fontsize=7)  # fmt: skip
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _merge(path: Path, new: pd.DataFrame) -> pd.DataFrame:
    """This run's rows with an earlier run's for other policies or seeds (a run for a few policies must not
    drop the others' figures from seeds.csv); this run's win where both have a policy and seed."""
    if not path.is_file():
        return new
    old = pd.read_csv(path)[["policy", "seed", "age_mae", "gender_acc"]]
    keep = ~old.set_index(["policy", "seed"]).index.isin(new.set_index(["policy", "seed"]).index)
    return pd.concat([old[keep], new], ignore_index=True).sort_values(["seed", "policy"], kind="stable")


def report(df: pd.DataFrame, setting: str) -> str:
    lines = [f"## Training seeds, setting {setting}", "",
             "| policy | seed | age MAE | vs (a) same seed | gender acc % | vs (a), pp |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in df.itertuples():
        lines.append(f"| {LABELS[r.policy]} | {r.seed} | {r.age_mae:.2f} | {r.d_mae:+.2f} | {r.gender_acc:.2f} | "
                     f"{r.d_acc:+.2f} |")  # fmt: skip
    for name, g in df.groupby("policy", sort=False):
        sd = lambda c: float(np.std(g[c], ddof=1)) if len(g) > 1 else float("nan")  # noqa: E731
        lines.append(f"| {LABELS[name]} | mean ± sd ({len(g)}) | {g['age_mae'].mean():.2f} ± {sd('age_mae'):.2f} | "
                     f"{g['d_mae'].mean():+.2f} ± {sd('d_mae'):.2f} | {g['gender_acc'].mean():.2f} ± "
                     f"{sd('gender_acc'):.2f} | {g['d_acc'].mean():+.2f} ± {sd('d_acc'):.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def paired(df: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Per training seed both policies were trained with: A's age MAE and gender accuracy minus B's.

    Two trainings of the same data differ by up to 0.5 y and 1 pp here, so a policy is better than another
    only if it is better across trainings; pairing by seed removes what the seed does to both."""
    missing = {a, b} - set(df["policy"])
    if missing:
        raise SystemExit(f"--versus: no trained seeds for {', '.join(sorted(missing))} in seeds.csv")
    w = _pair_wide(df, a, b)
    return pd.DataFrame({"d_mae": w[("age_mae", a)] - w[("age_mae", b)],
                         "d_acc": w[("gender_acc", a)] - w[("gender_acc", b)]})  # fmt: skip


def t_interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of x (nan, nan with fewer than two values)."""
    from scipy import stats

    if len(x) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * np.std(x, ddof=1) / np.sqrt(len(x))
    return float(np.mean(x) - half), float(np.mean(x) + half)


def versus(df: pd.DataFrame, a: str, b: str) -> str:
    """A minus B by training seed, then the mean with its 95% t-interval over seeds and the count of seeds
    where A is better (lower MAE, higher accuracy)."""
    d = paired(df, a, b)
    lines = [f"## {LABELS[a]} minus {LABELS[b]}, by training seed", "",
             "| seed | age MAE, y | gender acc, pp |", "|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {s} | {r.d_mae:+.2f} | {r.d_acc:+.2f} |" for s, r in d.iterrows()]
    (m_lo, m_hi), (g_lo, g_hi) = t_interval(d["d_mae"].to_numpy()), t_interval(d["d_acc"].to_numpy())
    lines.append(f"| mean ({len(d)} seeds), 95% t-interval | {d['d_mae'].mean():+.2f} [{m_lo:+.2f}, {m_hi:+.2f}] | "
                 f"{d['d_acc'].mean():+.2f} [{g_lo:+.2f}, {g_hi:+.2f}] |")  # fmt: skip
    lines.append(f"| seeds where {LABELS[a]} is better | {int((d['d_mae'] < 0).sum())} of {len(d)} | "
                 f"{int((d['d_acc'] > 0).sum())} of {len(d)} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _pair_wide(df: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Age MAE and gender accuracy of A and B (columns) for the seeds both were trained with (rows); another
    policy's missing seeds do not matter."""
    both = df[df["policy"].isin([a, b])]
    return both.pivot_table(index="seed", columns="policy", values=["age_mae", "gender_acc"]).dropna()


def plot_versus(df: pd.DataFrame, a: str, b: str, path: Path) -> Path:
    """Both policies' age MAE and gender accuracy per training seed, a line joining each seed's pair: whether
    one policy is ahead across trainings shows as lines that all slope the same way."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wide = _pair_wide(df, a, b)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for ax, col, unit in zip(axes, ("age_mae", "gender_acc"), ("age MAE, years", "gender accuracy, %")):
        for seed, row in wide.iterrows():
            ax.plot([0, 1], [row[(col, b)], row[(col, a)]], "-o", color="grey", alpha=0.6, ms=4)
            ax.annotate(str(seed), (1.04, row[(col, a)]), fontsize=7, va="center")
        ax.plot([0, 1], [wide[(col, b)].mean(), wide[(col, a)].mean()], "-o", color="C3", lw=2.5, label="mean")
        ax.set_xticks([0, 1], [LABELS[b].split(":")[0], LABELS[a].split(":")[0]])
        ax.set_xlim(-0.3, 1.3)
        ax.set_ylabel(unit)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{LABELS[a]} against {LABELS[b]}, {len(wide)} training seeds", fontsize=9)
    fig.text(0.01, 0.01, "a grey line per training seed (its number at the right)", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
