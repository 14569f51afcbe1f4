"""From the databases' clips to Caffe's HDF5 inputs (`tools/preprocess.py run`): the stages.

Per clip, preprocessing.clip_chain (its docstring has the chain: frames, face, registration,
TIM, RPCA, the 16 sampled frames), run by preprocessing.workers in parallel (one process per
core, one BLAS/OpenCV thread each), results kept by preprocessing.clip_cache, so an
interrupted run loses at most the clips in flight.

Then, over the included clips: fold groups (preprocessing.folds), one HDF5 shard per group
and one augmented shard per group (training only; preprocessing.hdf5_shards), the fold list
files, folds.json, manifest.csv, skipped.csv and contact_sheet.png, each where
preprocessing.layout.DataFolder names it. A shard whose content fingerprint has not changed
is not rewritten. Every file is written to a temporary name and renamed, so nothing is ever
half-written. Given the same inputs, options and seed, the run produces the same shards and
manifest, whatever the number of workers. OUT holds a .lock (preprocessing.folder_lock: one
writer at a time).
"""
from __future__ import annotations

import os
import re
import shutil
import time
from collections import Counter
from types import SimpleNamespace

import numpy as np

from preprocessing.atomic import remove_temporaries
from preprocessing.augment import DEFAULT_VARIANTS
from preprocessing.clip_cache import cache_path, clip_stamp, read_cache
from preprocessing.clip_chain import PIPELINE_VERSION, Options, too_few_frames
from preprocessing.contact_sheet import choose_clips, item_title, named_clips, write_contact_sheet
from preprocessing.folder_lock import folder_lock
from preprocessing.layout import DataFolder, fold_name
from preprocessing.folds import assign_groups, check_fold_count, fold_plan, list_lines, fold_scheme_name
from preprocessing.labels import CLASSES
from preprocessing import protocols
from preprocessing.loaders import load_databases
from preprocessing.manifest import manifest_row, read_manifest, write_manifest, write_skipped
from preprocessing.errors import InputError
from preprocessing.hdf5_shards import (COMPRESSIONS, DEFAULT_COMPRESSION, load_clip_arrays,
                                      shard_key, shard_problem, stored_key)
from preprocessing.workers import (Runner, check_free_space, clip_task, flow_task, progress_bar,
                                   shard_task, rpca_settings_task)

__all__ = ["run", "run_rpca_settings", "summary_lines", "write_fig3"]


def run(roots, out, *, log=print, **kw):
    """The whole pipeline; returns a summary dict (also printed through `log`).

    roots: {database: folder}. Keywords: n_folds=10, loso=False, seed=0, options=Options(),
    augment (tuple of variant names; () = none; None = the defaults), workers, limit, rules,
    loader_options, progress=True, protocol, shard_compression ("none" | "gzip"), flow (None, or
    a preprocessing.flow.FlowParams: also the onset-to-apex flow shards). Holds OUT's
    lock (preprocessing.folder_lock) throughout: a second run into the same OUT, or into one
    that run_folds is reading, is refused.
    Raises InputError for bad input (missing folder, malformed sheet, too few clips, OUT busy).
    """
    out = os.path.abspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"--out {out} exists and is not a folder")
    with folder_lock(out, "writing", log=log):
        n = remove_temporaries(out)
        if n:
            log(f"removed {n} temporary file(s) left in {out} by an interrupted run")
        return _run(roots, out, log=log, **kw)


def run_rpca_settings(roots, settings, *, log=print, workers=None, progress=True, rules=None,
                      loader_options=None, limit=None, **kw):
    """Several preprocessing outputs that differ only in RPCA's setting (Fig. 10's sweep):
    settings = [(out, Options)]. Each clip's frames are read and its face found once for all
    of them (process_clip_rpca_settings), then each out is finished by `run` from its cache.
    Returns {out: run's summary, or the InputError that stopped that out}."""
    from contextlib import ExitStack
    outs = [os.path.abspath(o) for o, _ in settings]
    if len(set(outs)) != len(outs):
        raise InputError("run_rpca_settings: two RPCA settings share one output folder")
    workers = workers or os.cpu_count() or 1
    clips, _ = protocols.apply(protocols.load_protocol(), *load_databases(roots, rules, loader_options))
    if limit is not None:
        clips = clips[:int(limit)]
    tasks = []
    with ExitStack() as locks:
        for out in outs:
            locks.enter_context(folder_lock(out, "writing", log=log))
            remove_temporaries(out)
        for clip in clips:
            jobs = [(cache_path(DataFolder(out).cache_dir, clip), opts)
                    for out, (_, opts) in zip(outs, settings)]
            jobs = [(cf, o) for cf, o in jobs if read_cache(cf, clip_stamp(clip, o), clip.frames) is None]
            if jobs:
                tasks.append((clip, jobs))
        log(f"{len(clips)} clips x {len(settings)} RPCA settings: {sum(len(j) for _, j in tasks)} "
            f"results to compute for {len(tasks)} clips with {min(workers, max(len(tasks), 1))} "
            "worker(s)")
        runner = Runner(workers)
        try:
            with progress_bar(len(tasks), "clips", progress) as bar:
                for _ in runner.map(rpca_settings_task, tasks):
                    bar.update(1)
        finally:
            runner.close()
    results = {}
    for out, (_, opts) in zip(outs, settings):
        try:
            results[out] = run(roots, out, log=log, options=opts, workers=workers,
                               progress=progress, rules=rules, loader_options=loader_options,
                               limit=limit, **kw)
        except InputError as exc:
            results[out] = exc
    return results


def _run(roots, out, *, n_folds=10, loso=False, seed=0, options=Options(), augment=None,
         workers=None, limit=None, rules=None, loader_options=None, progress=True, log=print,
         protocol=None, shard_compression=DEFAULT_COMPRESSION, flow=None):
    """The pipeline's stages, in order (each a function below): load the sheets and frame
    folders, compute (or reuse) every clip, assign fold groups and write the manifest, write
    the shards, write the fold lists and folds.json, draw the contact sheet, summarise."""
    t_start = time.time()      # out: absolute, and not a file (checked by run)
    if any(ch.isspace() for ch in out):
        raise InputError(f"--out {out!r} contains whitespace; Caffe's HDF5Data cannot read shard "
                         "paths with spaces from its list files. Choose another folder.")
    variants = tuple(DEFAULT_VARIANTS) if augment is None else tuple(augment)
    workers = workers or os.cpu_count() or 1
    if shard_compression not in COMPRESSIONS:
        raise InputError(f"--shard-compression: {shard_compression!r} is not one of "
                         f"{', '.join(COMPRESSIONS)}")
    if flow is not None:
        from preprocessing.flow import check_tvl1
        check_tvl1()      # before hours of RPCA, not after

    evaluation = protocols.load_protocol(protocol)
    if evaluation.folds == "loso":
        loso = True
    loader_options = {**evaluation.loader_options(), **(loader_options or {})}
    clips, skipped = _load_stage(roots, out, rules, loader_options, limit, n_folds, loso, log,
                                 evaluation)
    DataFolder(out).write_protocol(evaluation)
    runner = Runner(workers)
    try:
        cache_files, results, t_clips = _clips_stage(clips, skipped, out, options, runner,
                                                     workers, progress, log)
        included, group_of, rows = _groups_stage(out, clips, results, n_folds, loso, seed)
        scheme = fold_scheme_name(n_folds, loso)
        plan = fold_plan([group_of[i] for i in included], [clips[i].label for i in included],
                         [clips[i].subject for i in included], scheme, seed, len(variants))
        shards = _shards_stage(out, plan, clips, included, group_of, results, cache_files,
                               variants, shard_compression, runner, progress, log)
        if flow is not None:
            flow_summary = _flow_stage(out, plan, clips, included, group_of, cache_files, options,
                                       flow, runner, progress, log)
        else:
            # Flow shards of an earlier --flow run would no longer match these groups.
            flow_summary = None
            _remove_stale(DataFolder(out).shard_dir, r"group\d+_flow\.h5", set())
    finally:
        runner.close()
    plan["shard_compression"] = shard_compression
    plan["flow"] = flow_summary
    _folds_stage(out, plan, shards, variants, options, roots)
    _contact_sheet_stage(out, rows, cache_files, evaluation.classes)

    computed = [r for r in results if r["computed"]]
    secs = [r["info"]["seconds"] for r in computed if r["included"]]
    summary = {
        "out": out, "clips": len(clips), "loader_skipped": len(skipped),
        "included": len(included), "excluded": len(clips) - len(included),
        "computed": len(computed), "cached": len(clips) - len(computed),
        "shards_written": sorted(shards["written"]), "shards_total": len(shards["keep"]),
        "per_database": _per_database(clips, results),
        "per_class": [int(c) for c in np.bincount([clips[i].label for i in included],
                                                  minlength=len(evaluation.classes))],
        "classes": list(evaluation.classes), "evaluation": evaluation.name,
        "excluded_by_stage": dict(Counter(r["info"].get("stage", "?") for r in results
                                          if not r["included"])),
        "seconds": time.time() - t_start, "seconds_clips": t_clips,
        "seconds_shards": shards["seconds"],
        "mean_clip_seconds": float(np.mean(secs)) if secs else None,
        "fold_scheme": scheme, "n_folds": plan["n_folds"], "workers": workers,
    }
    for line in summary_lines(summary):
        log(line)
    return summary


def _load_stage(roots, out, rules, loader_options, limit, n_folds, loso, log, evaluation):
    """(clips, skipped) from the databases' sheets and frame folders, labelled and filtered by
    the evaluation protocol (preprocessing.protocols); writes skipped.csv."""
    protocols.check_roots(evaluation, roots)
    clips, skipped = protocols.apply(evaluation, *load_databases(roots, rules, loader_options))
    if limit is not None:
        clips = clips[:int(limit)]
    os.makedirs(out, exist_ok=True)
    folder = DataFolder(out)
    write_skipped(folder.skipped, skipped)
    if not clips:
        raise InputError(f"no usable clip in {', '.join(roots.values())}; the reasons are in "
                         f"{folder.skipped}")
    if not loso:
        # Before hours of computing: a split the clips' classes cannot give is refused now.
        check_fold_count([c.label for c in clips], n_folds, log, evaluation.classes)
    return clips, skipped


def _clips_stage(clips, skipped, out, options, runner, workers, progress, log):
    """(cache files, results, seconds): every clip's face, TIM, RPCA and sampled frames, from
    its cache file when that was made with the same stamp, else computed (in parallel)."""
    cache_dir = DataFolder(out).cache_dir
    cache_files = [cache_path(cache_dir, c) for c in clips]
    dup = [p for p, n in Counter(cache_files).items() if n > 1]
    if dup:
        raise InputError(f"two clips map to the same cache file {dup[0]}: clip names must be "
                         "unique per subject")
    results = [None] * len(clips)
    tasks = []
    for i, (clip, cf) in enumerate(zip(clips, cache_files)):
        short = too_few_frames(clip) if clip.frames else None
        if short:
            # Excluded whatever the clip's cache file says: a file cached before this rule
            # existed holds the clip as included.
            info = {"included": False, "reason": short, "stage": "frames"}
            results[i] = {"included": False, "reason": short, "info": info, "computed": False}
            continue
        results[i] = read_cache(cf, clip_stamp(clip, options), clip.frames)
        if results[i] is None:
            tasks.append((i, clip, cf, options))
    log(f"{len(clips)} clips ({len(skipped)} skipped by the loaders); {len(clips) - len(tasks)} "
        f"cached, {len(tasks)} to compute with {min(workers, max(len(tasks), 1))} worker(s)")
    t0 = time.time()
    with progress_bar(len(tasks), "clips", progress) as bar:
        for i, res in runner.map(clip_task, tasks):
            results[i] = res
            bar.update(1)
    return cache_files, results, time.time() - t0


def _groups_stage(out, clips, results, n_folds, loso, seed):
    """(included clip indices, {index: fold group}, manifest rows); writes manifest.csv, also
    when no split can be made (so that the reasons are on disk)."""
    included = [i for i, r in enumerate(results) if r["included"]]
    group_of = {}
    if included:
        try:
            groups = assign_groups([clips[i].label for i in included],
                                   [clips[i].subject for i in included], n_folds, loso, seed)
            group_of = dict(zip(included, groups.tolist()))
        except InputError:
            _write_manifest_rows(out, clips, results, {})
            raise
    rows = _write_manifest_rows(out, clips, results, group_of)
    if not included:
        raise InputError(f"no clip could be used; the reasons are in {DataFolder(out).manifest}")
    return included, group_of, rows


def _shards_stage(out, plan, clips, included, group_of, results, cache_files, variants,
                  compression, runner, progress, log):
    """One HDF5 shard per fold group, and one augmented per group for training; a shard whose
    key (its clips' digests, variants, group) matches and that reads back sound is kept.
    Returns {plain: {group: path}, aug: {group: path}, written, keep, seconds}."""
    folder = DataFolder(out)
    shard_dir = folder.shard_dir
    plain, aug, shard_tasks, keep = {}, {}, [], set()
    for g in (e["group"] for e in plan["groups"]):
        members = [i for i in included if group_of[i] == g]
        fp = [(i, clips[i].label, results[i]["info"]["digest"]) for i in members]
        # The digest goes with each cache file: the shard is written from the arrays the key
        # names, never from a file another process rewrote since.
        items = [(i, label, cache_files[i], digest) for i, label, digest in fp]
        for vs, name, table in (((), folder.shard_name(g), plain),
                                (variants, folder.shard_name(g, aug=True), aug)):
            if name.endswith("_aug.h5") and not variants:
                continue
            path = os.path.join(shard_dir, name)
            table[g] = path
            keep.add(name)
            key = shard_key(fp, vs, g, compression)
            if stored_key(path) != key:
                shard_tasks.append((path, items, vs, key, g, compression))
            else:
                damaged = shard_problem(path)
                if damaged:
                    log(f"{path}: {damaged}; writing it again")
                    shard_tasks.append((path, items, vs, key, g, compression))
    os.makedirs(shard_dir, exist_ok=True)
    check_free_space(shard_dir, shard_tasks)
    _remove_stale(shard_dir, r"group\d+(_aug)?\.h5", keep)
    written = []
    t0 = time.time()
    with progress_bar(len(shard_tasks), "shards", progress, unit="shard") as bar:
        for path, n in runner.map(shard_task, shard_tasks):
            written.append(os.path.basename(path))
            bar.update(1)
    return {"plain": plain, "aug": aug, "written": written, "keep": keep,
            "seconds": time.time() - t0}


def _flow_stage(out, plan, clips, included, group_of, cache_files, options, params, runner,
                progress, log):
    """Each included clip's onset-to-apex flow (preprocessing.flow; from its flow cache file
    when that matches), then one flow shard per fold group, shards/groupKK_flow.h5, rewritten
    only when its key changed. A clip whose flow cannot be computed stays in the PSN shards and
    is left out of the flow shard, named in the log. Returns what folds.json records."""
    from preprocessing.flow import (FLOW_SIZE, flow_cache_path, flow_stamp, normalise_flow,
                                    read_flow_cache)
    from preprocessing.hdf5_shards import flow_shard_key, write_flow_shard
    results, tasks = {}, []
    for i in included:
        got = read_flow_cache(flow_cache_path(cache_files[i]), flow_stamp(clips[i], options, params),
                              clips[i])
        if got is None:
            tasks.append((i, clips[i], cache_files[i], options, params))
        else:
            results[i] = got
    log(f"optical flow: {len(included) - len(tasks)} clips cached, {len(tasks)} to compute")
    with progress_bar(len(tasks), "flow", progress) as bar:
        for i, res in runner.map(flow_task, tasks):
            results[i] = res
            bar.update(1)
    missing = [i for i in included if not results[i]["included"]]
    for i in missing:
        log(f"optical flow: {clips[i].subject} {clips[i].clip} left out of the flow shards: "
            f"{results[i]['reason']}")
    folder = DataFolder(out)
    written, names = [], set()
    for g in (e["group"] for e in plan["groups"]):
        members = [i for i in included if group_of[i] == g and results[i]["included"]]
        if not members:
            continue
        fp = [(i, clips[i].label, results[i]["info"]["digest"]) for i in members]
        key = flow_shard_key(fp, g, params.stamp())
        path = folder.path(folder.SHARDS, folder.flow_shard_name(g))
        names.add(os.path.basename(path))
        if stored_key(path) == key and not shard_problem(path):
            continue
        # Every included result holds its maps: read_flow_cache and process_flow both return them.
        rows = [(i, clips[i].label, normalise_flow(results[i]["maps"])) for i in members]
        write_flow_shard(path, rows, key, g)
        written.append(os.path.basename(path))
    _remove_stale(folder.shard_dir, r"group\d+_flow\.h5", names)
    notes = {str(i): results[i]["info"]["notes"] for i in included
             if results[i]["included"] and results[i]["info"]["notes"]}
    log(f"optical flow: {len(included) - len(missing)} clips in {len(names)} flow shard(s) "
        f"({len(written)} written), {FLOW_SIZE} x {FLOW_SIZE}; {len(notes)} clip(s) with a note "
        f"(folds.json's flow.notes, by manifest row)")
    keys = {name: stored_key(folder.path(folder.SHARDS, name)) for name in sorted(names)}
    return {"params": params.stamp(), "clips": len(included) - len(missing),
            "left_out": {str(i): results[i]["reason"] for i in missing}, "notes": notes,
            "shards": sorted(names), "keys": keys}


def _folds_stage(out, plan, shards, variants, options, roots):
    """folds/foldKK/{train,test}.txt (paths relative to OUT) and folds.json."""
    plain, aug = shards["plain"], shards["aug"]
    folder = DataFolder(out)
    fold_names = set()
    for fold in plan["folds"]:
        train, test = list_lines(fold, plain, aug)
        k = fold["fold"]
        fold_names.add(fold_name(k))
        # Paths relative to OUT, so the folder can be moved or copied (run_folds resolves them).
        fold["train_shards"] = folder.write_fold_list(k, "train", train)
        fold["test_shards"] = folder.write_fold_list(k, "test", test)
        fold["train_list"] = folder.relative(folder.fold_list(k, "train"))
        fold["test_list"] = folder.relative(folder.fold_list(k, "test"))
    _remove_stale(folder.folds_dir, r"fold\d+", fold_names)
    for entry in plan["groups"]:
        entry["shard"] = folder.relative(plain[entry["group"]])
        entry["aug_shard"] = folder.relative(aug[entry["group"]]) if entry["group"] in aug else None
    plan.update(augment=list(variants), options=options.stamp(), pipeline_version=PIPELINE_VERSION,
                databases=sorted(roots), manifest=folder.MANIFEST)
    folder.write_plan(plan)


def _contact_sheet_stage(out, rows, cache_files, classes):
    """contact_sheet.png: raw frames and E of a few included clips, for a look by eye."""
    items = []
    for r in choose_clips(rows, 4):
        raw, sparse = load_clip_arrays(cache_files[int(r["index"])])
        items.append((item_title(r, classes), raw, sparse))
    write_contact_sheet(DataFolder(out).contact_sheet, items)


def _remove_stale(folder, pattern, keep):
    """Remove our own files/folders under folder that match pattern and are not in keep."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        if re.fullmatch(pattern, name) and name not in keep:
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)


def write_fig3(out, names, png=None):
    """The paper's Fig. 3 for the clips named (clip names or SUBJECT/CLIP): their 16 crops and
    E side by side, from the cache of a finished run into `out`; writes png (default
    out/fig3.png) and returns its path. InputError for an unknown, ambiguous or excluded clip
    or a missing cache file."""
    manifest = DataFolder(out).manifest
    if not os.path.isfile(manifest):
        raise InputError(f"{manifest} not found: the folder must be the --out of "
                         "`preprocess.py run`")
    try:
        rows = read_manifest(manifest)
    except ValueError as e:
        raise InputError(str(e))
    if not names:
        raise InputError("name at least one clip for Fig. 3")
    items = []
    for r in named_clips(rows, names, manifest):
        cache = cache_path(DataFolder(out).cache_dir, SimpleNamespace(
            database=r["database"], subject=r["subject"], clip=r["clip"]))
        if not os.path.isfile(cache):
            raise InputError(f"{cache} not found: run `preprocess.py run` on the same --out again")
        raw, sparse = load_clip_arrays(cache)
        items.append((item_title(r), raw, sparse))
    png = png or os.path.join(out, "fig3.png")
    write_contact_sheet(png, items)
    return png


def _write_manifest_rows(out, clips, results, group_of):
    rows = [manifest_row(i, c, r, group_of.get(i)) for i, (c, r) in enumerate(zip(clips, results))]
    write_manifest(DataFolder(out).manifest, rows)
    return [{k: str(v) for k, v in row.items()} for row in rows]


def _per_database(clips, results):
    out = {}
    for c, r in zip(clips, results):
        d = out.setdefault(c.database, {"included": 0, "excluded": 0})
        d["included" if r["included"] else "excluded"] += 1
    return out


def summary_lines(s):
    lines = [f"{'database':10s} {'included':>8s} {'excluded':>8s}"]
    for db, d in s["per_database"].items():
        lines.append(f"{db:10s} {d['included']:8d} {d['excluded']:8d}")
    lines.append(f"{'total':10s} {s['included']:8d} {s['excluded']:8d}   (+{s['loader_skipped']} "
                 "skipped by the loaders, see skipped.csv)")
    classes = s.get("classes", CLASSES)
    lines.append("included per class: " + ", ".join(f"{classes[k]} {n}" for k, n in enumerate(s["per_class"])))
    if s["excluded_by_stage"]:
        lines.append("excluded at: " + ", ".join(f"{k} {v}" for k, v in sorted(s["excluded_by_stage"].items()))
                     + " (reasons in manifest.csv)")
    per = f", {s['mean_clip_seconds']:.2f} s per clip in one worker" if s["mean_clip_seconds"] else ""
    lines.append(f"clips: {s['computed']} computed, {s['cached']} from the cache{per}; shards: "
                 f"{len(s['shards_written'])} of {s['shards_total']} written; {s['fold_scheme']}, "
                 f"{s['n_folds']} folds")
    lines.append(f"time: {s['seconds']:.1f} s (clips {s['seconds_clips']:.1f} s, shards "
                 f"{s['seconds_shards']:.1f} s, {s['workers']} worker(s)); output in {s['out']}")
    return lines
