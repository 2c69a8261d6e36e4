"""`cnnvit sweep`: many independent `cnnvit run` studies from one grid file.

A job is one `cnnvit run` directory, `SWEEP_DIR/<dataset>/<size>px[/<variant>]/seed_<n>/`,
training every model of the grid at one dataset, image size, seed and value of each `set:`
list (the variant). Jobs run as subprocesses `python -m cnnvit run ...` (locally, N at once) or
as one Slurm job array through submitit; a job is done when its run directory has
`results/final_comparison.csv` and every model finished, so a second sweep skips done jobs
and `cnnvit run` itself resumes interrupted ones. `SWEEP_DIR/sweep.json` records the grid,
the jobs, the executor and the submissions; `cnnvit compare SWEEP_DIR` aggregates them.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cnnvit import config
from cnnvit.compare.sweep import RESULTS_FILE, SWEEP_FILE
from cnnvit.data.validate import safe_name
from cnnvit.errors import CnnvitError, ConfigError
from cnnvit.io import atomic_write_json, make_dir, read_json
from cnnvit.rundir import RunDir

GRID_KEYS = ("description", "preset", "datasets", "models", "image_sizes", "seeds", "set",
             "slurm", "explain", "robustness")
LISTS = {"datasets": str, "models": str, "image_sizes": int, "seeds": int}
SLURM_KEYS: dict[str, type] = {"partition": str, "time": int, "gpus": int, "mem": int,
                               "cpus": int}
# grid slurm key -> submitit's AutoExecutor parameter
SUBMITIT = {"partition": "slurm_partition", "time": "timeout_min", "gpus": "gpus_per_node",
            "mem": "mem_gb", "cpus": "cpus_per_task"}
GRID_OWNED = {"dataset": "datasets", "model": "models", "image_size": "image_sizes",
              "seed": "seeds", "out": "--out"}
JOB_LOG = "logs/sweep_job.log"  # each job's stdout and stderr, relative to its run directory


@dataclass
class Grid:
    """A validated grid file."""

    path: Path
    preset: str
    datasets: list[str]
    models: list[str]
    image_sizes: list[int]
    seeds: list[int]
    fixed: dict[str, Any]  # `set:` keys with one value
    axes: dict[str, list[Any]]  # `set:` keys with a list of values
    slurm: dict[str, Any]
    explain: bool
    robustness: bool
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Job:
    """One `cnnvit run` of the sweep; `dir` is relative to the sweep directory."""

    id: int
    dataset: str
    models: tuple[str, ...]
    image_size: int
    seed: int
    variant: str
    settings: dict[str, Any]
    dir: str
    preset: str
    explain: bool
    robustness: bool = True

    def argv(self, root: Path, threads: int) -> list[str]:
        """The `cnnvit run` command line of this job (an argument list, never a shell string)."""
        argv = [sys.executable, "-m", "cnnvit", "run", "--preset", self.preset,
                "--dataset", self.dataset, "--models", ",".join(self.models),
                "--seeds", str(self.seed), "--image-size", str(self.image_size),
                "--out", str(root / self.dir), "--quiet"]
        if threads > 0 and "threads" not in self.settings:
            argv += ["--threads", str(threads)]
        for key, value in self.settings.items():
            argv += ["--set", f"{key}={_set_text(value)}"]
        return (argv + ([] if self.explain else ["--no-explain"])
                + ([] if self.robustness else ["--no-robustness"]))


def _set_text(value: Any) -> str:
    """A `set:` value as `cnnvit run --set` text (mappings as JSON, lists comma-separated)."""
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return "none" if value is None else str(value)


def _list(raw: dict[str, Any], key: str, kind: type, where: str) -> list[Any]:
    values = raw.get(key)
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: '{key}' must be a non-empty list, got {values!r}")
    for v in values:
        small = key == "image_sizes" and isinstance(v, int) and v < 4
        if not isinstance(v, kind) or isinstance(v, bool) or small:
            what = "an image size of at least 4" if key == "image_sizes" else kind.__name__
            raise ConfigError(f"{where}: '{key}' entry {v!r} is not {what}")
    if len(set(map(str, values))) != len(values):
        raise ConfigError(f"{where}: '{key}' lists a value twice: {values}")
    return list(values)


def _settings(raw: Any, models: list[str], where: str
              ) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """`set:` split into fixed keys and sweep axes (lists), each value checked by the config."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'set' must be a mapping of config keys, got {raw!r}")
    fixed: dict[str, Any] = {}
    axes: dict[str, list[Any]] = {}
    for key, value in raw.items():
        prefix, dot, name = str(key).rpartition(".")
        if dot and prefix not in models:
            raise ConfigError(f"{where}: set key '{key}': '{prefix}' is not a model of the "
                              f"grid ({', '.join(models)})")
        if name in GRID_OWNED:
            raise ConfigError(f"{where}: set '{key}' is chosen by the grid: use "
                              f"'{GRID_OWNED[name]}'")
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ConfigError(f"{where}: set '{key}' is an empty list")
        for v in values:
            config.apply_overrides(config.Config(), {name: v})
        if isinstance(value, list) and len(value) > 1:
            axes[str(key)] = value
        else:
            fixed[str(key)] = values[0]
    return fixed, axes


def _slurm(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'slurm' must be a mapping, got {raw!r}")
    for key, value in raw.items():
        kind = SLURM_KEYS.get(key)
        if kind is None:
            raise ConfigError(f"{where}: unknown slurm key '{key}'; valid: "
                              f"{', '.join(SLURM_KEYS)}")
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigError(f"{where}: slurm '{key}' must be {kind.__name__}, got {value!r}")
    return dict(raw)


def read_grid(path: str | Path) -> Grid:
    """Read and check a grid file: every problem is one ConfigError line, before any run."""
    path = Path(path)
    raw = config.read_yaml(path)
    where = str(path)
    unknown = sorted(set(raw) - set(GRID_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: "
                          f"{', '.join(GRID_KEYS)}")
    lists = {key: _list(raw, key, kind, where) for key, kind in LISTS.items()}
    preset = raw.get("preset", "quickstart")
    explain, robustness = raw.get("explain", True), raw.get("robustness", True)
    if not isinstance(preset, str) or not all(isinstance(b, bool) for b in (explain, robustness)):
        raise ConfigError(f"{where}: 'preset' must be a name or a path, and 'explain' and "
                          "'robustness' true or false")
    if preset.endswith((".yaml", ".yml")) and not Path(preset).is_absolute():
        preset = str((path.parent / preset).resolve())  # relative to the grid file
    fixed, axes = _settings(raw.get("set") or {}, lists["models"], where)
    return Grid(path=path, preset=preset, datasets=lists["datasets"], models=lists["models"],
                image_sizes=lists["image_sizes"], seeds=lists["seeds"], fixed=fixed, axes=axes,
                slurm=_slurm(raw.get("slurm") or {}, where), explain=explain,
                robustness=robustness, raw=raw)


def plan(grid: Grid) -> list[Job]:
    """Every job of the grid: datasets × image sizes × variants × seeds, in that order."""
    names = sorted(grid.axes)
    variants = list(itertools.product(*(grid.axes[k] for k in names)))
    jobs: list[Job] = []
    for dataset, size, values, seed in itertools.product(grid.datasets, grid.image_sizes,
                                                         variants, grid.seeds):
        chosen = dict(zip(names, values, strict=True))
        variant = "_".join(f"{k}={_set_text(v)}" for k, v in chosen.items())
        parts = [safe_name(dataset), f"{size}px", *([safe_name(variant)] if variant else []),
                 f"seed_{seed}"]
        jobs.append(Job(id=len(jobs), dataset=dataset, models=tuple(grid.models),
                        image_size=size, seed=seed, variant=variant,
                        settings={**grid.fixed, **chosen}, dir="/".join(parts),
                        preset=grid.preset, explain=grid.explain,
                        robustness=grid.robustness))
    return jobs


def status(root: Path, job: Job) -> str:
    """done (results and every model finished), partial (started) or new."""
    run = RunDir(root / job.dir)
    if not run.root.is_dir():
        return "new"
    finished = all(run.model_dir(safe_name(m)).finished for m in job.models)
    return "done" if finished and (run.root / RESULTS_FILE).is_file() else "partial"


def check(grid: Grid, jobs: list[Job]) -> None:
    """Resolve every job's preset as `cnnvit run` would (unknown model, bad value, ...)."""
    from cnnvit import presets  # torch: only once the grid file itself is good

    seen = set()
    for job in jobs:
        key = (job.dataset, job.image_size, job.variant)
        if key not in seen:
            seen.add(key)
            presets.load(grid.preset, dataset=job.dataset, models=list(job.models),
                         overrides={**job.settings, "image_size": job.image_size})


def run_job(root: Path, job: Job, threads: int,
            started: Callable[[subprocess.Popen[bytes]], None] | None = None) -> int:
    """Run one job's `cnnvit run` to the end, its output appended to `logs/sweep_job.log`;
    return its exit code. Local workers and Slurm array tasks both call this."""
    argv = job.argv(root, threads)
    log = root / job.dir / JOB_LOG
    make_dir(log.parent)
    with open(log, "ab") as out:
        out.write(f"[{datetime.now():%Y-%m-%d %H:%M:%S}] {argv}\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        if started is not None:
            started(proc)
        return proc.wait()


def slurm_task(root: Path, job: Job, threads: int) -> int:
    """One Slurm array task: `run_job`, failing the task when the run failed."""
    code = run_job(root, job, threads)
    if code != 0:
        raise RuntimeError(f"job {job.id} ({job.dir}) exited {code}; see "
                           f"{root / job.dir / JOB_LOG}")
    return code


def run_local(root: Path, jobs: list[Job], parallel: int, threads: int,
              say: Callable[[str], None] = print) -> list[Job]:
    """Run `jobs`, `parallel` at once; the failed ones. Ctrl-C or SIGTERM stops the running
    subprocesses (they save their epoch, as `cnnvit run` does) and queues no more."""
    procs: list[subprocess.Popen[bytes]] = []
    stopping = threading.Event()
    failed = []

    def one(job: Job) -> None:
        if stopping.is_set():
            return
        say(f"job {job.id} {job.dir}: started")
        code = run_job(root, job, threads, procs.append)
        if code != 0:
            failed.append(job)
        say(f"job {job.id} {job.dir}: " + ("done" if code == 0 else
                                          f"failed (exit {code}; log {root / job.dir / JOB_LOG})"))

    pool = ThreadPoolExecutor(max_workers=parallel)
    try:
        for future in [pool.submit(one, job) for job in jobs]:
            future.result()
    except BaseException:
        stopping.set()
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        raise
    finally:
        pool.shutdown(wait=True)
    return failed


def submit_slurm(root: Path, jobs: list[Job], resources: dict[str, Any], parallel: int | None,
                 cluster: str | None = None) -> list[str]:
    """Submit `jobs` as one job array through submitit; the array task ids. `cluster` is
    submitit's ("debug" runs them here, for tests; default: Slurm)."""
    try:
        import submitit
    except ImportError:
        raise CnnvitError("--executor slurm needs submitit: pip install 'cnnvit[slurm]'"
                          ) from None
    executor = submitit.AutoExecutor(folder=root / "slurm" / "%j", cluster=cluster)
    params = {SUBMITIT[k]: v for k, v in resources.items() if v is not None}
    if parallel:
        params["slurm_array_parallelism"] = parallel
    executor.update_parameters(name="cnnvit-sweep", **params)
    threads = int(resources.get("cpus") or 0)
    submitted = executor.map_array(slurm_task, [root] * len(jobs), jobs, [threads] * len(jobs))
    if cluster == "debug":
        for task in submitted:
            task.result()
    return [str(task.job_id) for task in submitted]


def write_record(root: Path, grid: Grid, jobs: list[Job], executor: str,
                 submitted: list[str] | None = None) -> Path:
    """Write (update) `SWEEP_DIR/sweep.json`: grid, jobs, executor and every submission."""
    path = root / SWEEP_FILE
    old = read_json(path) if path.is_file() else {}
    submissions = list(old.get("submissions", []))
    if submitted is not None:
        submissions.append({"time": datetime.now().isoformat(timespec="seconds"),
                            "executor": executor, "ids": submitted})
    atomic_write_json(path, {"grid_file": str(grid.path), "grid": grid.raw,
                             "executor": executor, "jobs": [asdict(j) for j in jobs],
                             "submissions": submissions})
    return path


def summarize(root: Path) -> dict[str, Path]:
    """`cnnvit compare SWEEP_DIR`: the summary tables and the accuracy-against-FLOPs figure."""
    from cnnvit.compare.sweep import aggregate
    from cnnvit.plots.sweep import plot_sweep

    paths = aggregate(root)
    paths["sweep_figure"] = plot_sweep(root)
    return paths


def describe(root: Path, job: Job) -> str:
    """One line of `--dry-run`: id, dataset, models, size, seed, variant, directory, status."""
    variant = f" {job.variant}" if job.variant else ""
    return (f"job {job.id:3d}  {job.dataset}  {','.join(job.models)}  {job.image_size}px  "
            f"seed {job.seed}{variant}  {root / job.dir}  {status(root, job)}")


def sweep(grid_file: str | Path, out: str | Path | None = None, *, dry_run: bool = False,
          parallel: int = 1, executor: str = "local", resources: dict[str, Any] | None = None,
          explain: bool = True, robustness: bool = True, cluster: str | None = None,
          say: Callable[[str], None] = print) -> list[Job]:
    """Plan, check and run (or submit, or list) a grid's jobs; return the jobs planned.

    `resources` (partition, time, gpus, mem, cpus) override the grid's `slurm:` section;
    `cluster` is passed to submitit (tests use "debug")."""
    if parallel < 1:
        raise CnnvitError(f"--jobs must be at least 1; got {parallel}")
    grid = read_grid(grid_file)
    grid.explain = grid.explain and explain
    grid.robustness = grid.robustness and robustness
    root = Path(out or Path("sweeps") / grid.path.stem)
    jobs = plan(grid)
    check(grid, jobs)
    if dry_run:
        for job in jobs:
            say(describe(root, job))
        return jobs
    todo = [job for job in jobs if status(root, job) != "done"]
    say(f"sweep {root}: {len(jobs)} jobs, {len(jobs) - len(todo)} done (skipped), "
        f"{len(todo)} to run ({executor})")
    make_dir(root)
    write_record(root, grid, jobs, executor)
    if executor == "slurm":
        chosen = {**grid.slurm, **{k: v for k, v in (resources or {}).items() if v is not None}}
        ids = submit_slurm(root, todo, chosen, parallel if parallel > 1 else None,
                           cluster) if todo else []
        write_record(root, grid, jobs, executor, ids)
        say(f"submitted {len(ids)} array tasks: {', '.join(ids) or 'none'}; "
            f"`cnnvit compare {root}` once they finish")
        return jobs
    threads = max(1, (os.cpu_count() or 1) // parallel)
    failed = run_local(root, todo, parallel, threads, say)
    if failed:
        raise CnnvitError(f"{len(failed)} of {len(todo)} jobs failed: "
                          f"{', '.join(j.dir for j in failed)} (see each {JOB_LOG})", code=1)
    for name, path in summarize(root).items():
        say(f"{name}: {path}")
    return jobs
