"""DailyDialog in: the authors' folder layout, their zip files, Parquet files and Hub datasets.

Every reader produces the same records: a ``Corpus`` of ``Dialogue`` per split, labels 0-based.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ctrldial.errors import UserError

SPLITS = ("train", "validation", "test")
ACTS = ("inform", "question", "directive", "commissive")  # files: 1..4
EMOTIONS = ("no_emotion", "anger", "disgust", "fear", "happiness", "sadness", "surprise")  # files: 0..6
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "assets" / "sample"


@dataclass
class Dialogue:
    id: str
    split: str
    utterances: list[str]
    acts: list[int]  # 0-based index into ACTS
    emotions: list[int]  # index into EMOTIONS


@dataclass
class Corpus:
    splits: dict[str, list[Dialogue]]
    source: str
    skipped: dict[str, int] = field(default_factory=dict)
    """Malformed dialogues dropped per split in `skip` mode."""
    removed_duplicates: dict[str, int] = field(default_factory=dict)
    """Evaluation dialogues removed because their text also occurs in train."""


class _Problems:
    """Collects malformed-dialogue problems: raise on the first, or count them in skip mode."""

    def __init__(self, on_error: str):
        self.on_error = on_error
        self.skipped: dict[str, int] = {}

    def report(self, split: str, message: str) -> None:
        if self.on_error != "skip":
            raise UserError(message + " (fix the file, or pass --set data.on_error=skip to drop such dialogues)")
        self.skipped[split] = self.skipped.get(split, 0) + 1


def _parse_labels(line: str, n_classes: int, offset: int, where: str) -> list[int] | str:
    out = []
    for tok in line.split():
        try:
            v = int(tok)
        except ValueError:
            return f"{where}: label {tok!r} is not an integer"
        if not offset <= v < n_classes + offset:
            return f"{where}: label {v} out of range, expected {offset}..{n_classes + offset - 1}"
        out.append(v - offset)
    return out


def parse_split(
    split: str,
    text: bytes,
    acts: bytes,
    emotions: bytes,
    names: tuple[str, str, str],
    problems: _Problems,
) -> list[Dialogue]:
    """Parse one split of the authors' layout. ``names`` are the file names used in errors."""
    decoded = []
    for raw, name in zip((text, acts, emotions), names):
        try:
            decoded.append(raw.decode("utf-8").split("\n"))
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            raise UserError(f"{name}:{line}: not valid UTF-8 (byte {raw[e.start]:#x}); re-save the file as UTF-8") from None
    text_lines, act_lines, emo_lines = (ls[:-1] if ls and ls[-1] == "" else ls for ls in decoded)
    if not text_lines:
        raise UserError(f"{names[0]}: split '{split}' has no dialogues; expected one dialogue per line")
    if not (len(text_lines) == len(act_lines) == len(emo_lines)):
        raise UserError(
            f"{names[0]}: {len(text_lines)} lines but {names[1]} has {len(act_lines)} and {names[2]} has "
            f"{len(emo_lines)}; the three files must have one line per dialogue"
        )
    dialogues = []
    for i, (t, a, e) in enumerate(zip(text_lines, act_lines, emo_lines), start=1):
        parts = t.split("__eou__")
        utts = [u.strip() for u in parts[:-1]] if len(parts) > 1 else [t.strip()]
        if not t.strip() or any(not u for u in utts):
            problems.report(split, f"{names[0]}:{i}: empty dialogue or empty utterance; expected `utt __eou__ utt __eou__`")
            continue
        acts_ = _parse_labels(a, len(ACTS), 1, f"{names[1]}:{i}")
        emos_ = _parse_labels(e, len(EMOTIONS), 0, f"{names[2]}:{i}")
        bad = next((x for x in (acts_, emos_) if isinstance(x, str)), None)
        if bad:
            problems.report(split, bad)
            continue
        for labels, name in ((acts_, names[1]), (emos_, names[2])):
            if len(labels) != len(utts):
                problems.report(
                    split, f"{name}:{i}: {len(labels)} labels for {len(utts)} utterances in {names[0]}:{i}; expected one label per utterance"
                )
                break
        else:
            dialogues.append(Dialogue(f"{split}-{i}", split, utts, acts_, emos_))
    if not dialogues:
        raise UserError(f"{names[0]}: split '{split}' has no valid dialogues left")
    return dialogues


def _split_files(split: str) -> tuple[str, str, str]:
    return f"dialogues_{split}.txt", f"dialogues_act_{split}.txt", f"dialogues_emotion_{split}.txt"


def read_folder(root: Path, on_error: str = "raise") -> Corpus:
    """The authors' layout: ``root/<split>/dialogues_<split>.txt`` (+ act, emotion), or ``root/<split>.zip``."""
    problems = _Problems(on_error)
    splits = {}
    for split in SPLITS:
        folder, zpath = root / split, root / f"{split}.zip"
        if folder.is_dir():
            files = [folder / n for n in _split_files(split)]
            missing = [str(f) for f in files if not f.is_file()]
            if missing:
                raise UserError(f"{missing[0]}: file missing; a DailyDialog folder needs {', '.join(_split_files(split))} in {folder}")
            splits[split] = parse_split(split, *(f.read_bytes() for f in files), tuple(str(f) for f in files), problems)
        elif zpath.is_file():
            splits[split] = _read_zip_split(zpath, split, problems)
        else:
            raise UserError(f"{root}: no '{split}/' folder or '{split}.zip'; expected the DailyDialog layout (train/, validation/, test/)")
    return Corpus(splits, str(root), skipped=problems.skipped)


def _read_zip_split(zpath: Path, split: str, problems: _Problems) -> list[Dialogue]:
    try:
        zf = zipfile.ZipFile(zpath)
    except zipfile.BadZipFile:
        raise UserError(f"{zpath}: not a valid zip file") from None
    with zf:
        by_base = {Path(n).name: n for n in zf.namelist() if not n.endswith("/")}
        names = _split_files(split)
        missing = [n for n in names if n not in by_base]
        if missing:
            raise UserError(f"{zpath}: missing {missing[0]} inside the zip; expected {', '.join(names)}")
        raw = [zf.read(by_base[n]) for n in names]
        return parse_split(split, *raw, tuple(f"{zpath}!{by_base[n]}" for n in names), problems)


def read_zip(path: Path, on_error: str = "raise") -> Corpus:
    """One zip holding the whole layout (e.g. the authors' ijcnlp_dailydialog.zip, with nested split zips)."""
    problems = _Problems(on_error)
    splits = {}
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise UserError(f"{path}: not a valid zip file") from None
    with zf:
        members = zf.namelist()
        for split in SPLITS:
            names = _split_files(split)
            found = {Path(m).name: m for m in members if Path(m).name in names}
            if len(found) == 3:
                raw = [zf.read(found[n]) for n in names]
                splits[split] = parse_split(split, *raw, tuple(f"{path}!{found[n]}" for n in names), problems)
                continue
            inner = next((m for m in members if Path(m).name == f"{split}.zip"), None)
            if inner is None:
                raise UserError(f"{path}: no {names[0]} or {split}.zip inside; expected the DailyDialog layout")
            with zipfile.ZipFile(io.BytesIO(zf.read(inner))) as iz:
                by_base = {Path(n).name: n for n in iz.namelist()}
                if any(n not in by_base for n in names):
                    raise UserError(f"{path}!{inner}: expected {', '.join(names)} inside")
                raw = [iz.read(by_base[n]) for n in names]
                splits[split] = parse_split(split, *raw, tuple(f"{path}!{inner}!{n}" for n in names), problems)
    return Corpus(splits, str(path), skipped=problems.skipped)


def dialogues_from_rows(rows: Iterable[dict], split: str, source: str, problems: _Problems) -> list[Dialogue]:
    """Map Hugging Face rows to dialogues. Two shapes are known:

    - one row per dialogue (``li2017dailydialog/daily_dialog``): ``dialog`` (list of str), ``act`` (ints,
      0 is a dummy label, 1..4 as in the files), ``emotion`` (ints 0..6);
    - one row per utterance (``DeepPavlov/daily_dialog``): ``dialog`` (the dialogue up to and including the
      labelled utterance), ``act_label_text`` / ``emotion_label_text`` (names); a dialogue's rows are consecutive.
    """
    out: list[Dialogue] = []
    current: Dialogue | None = None
    for i, row in enumerate(rows, start=1):
        where = f"{source} [{split}] row {i}"
        if "act" in row and "emotion" in row:
            utts = [str(u).strip() for u in row["dialog"]]
            acts = [int(a) for a in row["act"]]
            emos = [int(e) for e in row["emotion"]]
            if any(a == 0 for a in acts) or any(not 1 <= a <= 4 for a in acts):
                problems.report(split, f"{where}: act labels {acts} outside 1..4 (0 is the dataset's dummy label)")
                continue
            if any(not 0 <= e < len(EMOTIONS) for e in emos):
                problems.report(split, f"{where}: emotion labels {emos} outside 0..6")
                continue
            if not (len(utts) == len(acts) == len(emos)) or not utts:
                problems.report(split, f"{where}: {len(utts)} utterances, {len(acts)} acts, {len(emos)} emotions; expected equal counts")
                continue
            out.append(Dialogue(f"{split}-{i}", split, utts, [a - 1 for a in acts], emos))
        elif "act_label_text" in row:
            history = [str(u).strip() for u in row["dialog"]]
            act_name = str(row["act_label_text"]).strip().lower()
            emo_name = str(row.get("emotion_label_text", "no_emotion")).strip().lower().replace(" ", "_")
            if act_name not in ACTS or emo_name not in EMOTIONS:
                problems.report(split, f"{where}: unknown label act={act_name!r} emotion={emo_name!r}")
                continue
            if current is not None and len(history) == len(current.utterances) + 1 and history[:-1] == current.utterances:
                current.utterances.append(history[-1])
                current.acts.append(ACTS.index(act_name))
                current.emotions.append(EMOTIONS.index(emo_name))
            else:
                current = Dialogue(f"{split}-{len(out) + 1}", split, [history[-1]], [ACTS.index(act_name)], [EMOTIONS.index(emo_name)])
                out.append(current)
        else:
            raise UserError(f"{where}: unknown columns {sorted(row)}; expected dialog+act+emotion or dialog+act_label_text")
    if not out:
        raise UserError(f"{source}: split '{split}' has no dialogues")
    return out


def read_hf(dataset_dict, source: str, on_error: str = "raise") -> Corpus:
    """A ``datasets.DatasetDict`` (from the Hub or from Parquet files) → Corpus."""
    problems = _Problems(on_error)
    aliases = {"train": "train", "validation": "validation", "valid": "validation", "dev": "validation", "test": "test"}
    splits = {}
    for name in dataset_dict:
        if name in aliases:
            splits[aliases[name]] = dialogues_from_rows(dataset_dict[name], aliases[name], source, problems)
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise UserError(f"{source}: no '{missing[0]}' split (found {', '.join(dataset_dict) or 'none'}); expected train, validation, test")
    return Corpus(splits, source, skipped=problems.skipped)


def read_parquet(path: Path, on_error: str = "raise") -> Corpus:
    """Parquet files named by split (``train-*.parquet`` …), in a folder or its ``data/`` subfolder."""
    import datasets

    folder = path if path.is_dir() else path.parent
    files = sorted(folder.glob("*.parquet")) or sorted(folder.glob("data/*.parquet"))
    data_files: dict[str, list[str]] = {}
    for f in files:
        for split in ("train", "validation", "valid", "dev", "test"):
            if f.name.startswith(split):
                data_files.setdefault(split, []).append(str(f))
                break
    if not data_files:
        raise UserError(f"{path}: no Parquet files named train-*/validation-*/test-*.parquet")
    ds = datasets.load_dataset("parquet", data_files=data_files)
    return read_hf(ds, str(path), on_error)


def read_hub(dataset_id: str, on_error: str = "raise") -> Corpus:
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id)
    except Exception as e:  # network, auth, missing repo: all one message for the user
        raise UserError(
            f"data.path={dataset_id!r}: could not load it from the Hugging Face Hub ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
            "the machine may be offline: pass a local DailyDialog folder or zip with --set data.path=PATH"
        ) from None
    return read_hf(ds, dataset_id, on_error)


def load_corpus(path: str, on_error: str = "raise", dedup: bool = True) -> Corpus:
    """Resolve ``data.path`` (folder, zip, Parquet, Hub id or `sample`) and read it."""
    if path.startswith("<") and path.endswith(">"):
        # shipped sweep files say `path: <dailydialog>`: nobody else has the developers' copy of the corpus
        raise UserError(
            f"data.path={path} is a placeholder: pass your DailyDialog copy with --set data.path=/path/to/dailydialog "
            "(the authors' folder with train/ validation/ test/, their zips, Parquet files, or a Hub id such as li2017dailydialog/daily_dialog)"
        )
    if path == "sample":
        corpus = read_folder(SAMPLE_DIR, on_error)
    else:
        p = Path(path).expanduser()
        if p.is_dir():
            if (p / "train").is_dir() or (p / "train.zip").is_file():
                corpus = read_folder(p, on_error)
            elif list(p.glob("*.parquet")) or list(p.glob("data/*.parquet")):
                corpus = read_parquet(p, on_error)
            else:
                raise UserError(f"data.path={path}: folder has no train/ (DailyDialog layout), train.zip or *.parquet files")
        elif p.is_file():
            if p.suffix == ".zip":
                corpus = read_zip(p, on_error)
            elif p.suffix == ".parquet":
                corpus = read_parquet(p, on_error)
            else:
                raise UserError(f"data.path={path}: unsupported file type; pass a folder, a .zip or a .parquet")
        elif path.count("/") == 1 and not path.startswith((".", "/", "~")):
            corpus = read_hub(path, on_error)
        else:
            raise UserError(f"data.path={path}: no such folder or file (and not a Hub id like owner/name)")
    if dedup:
        remove_train_duplicates(corpus)
    return corpus


def dialogue_key(d: Dialogue) -> str:
    return "\n".join(d.utterances)


def duplicate_counts(corpus: Corpus) -> dict[str, int]:
    """Exact-text duplicates of each evaluation split inside train, and within each split."""
    train = {dialogue_key(d) for d in corpus.splits["train"]}
    out = {}
    for split, ds in corpus.splits.items():
        keys = [dialogue_key(d) for d in ds]
        out[f"within_{split}"] = len(keys) - len(set(keys))
        if split != "train":
            out[f"{split}_in_train"] = sum(k in train for k in keys)
    return out


def remove_train_duplicates(corpus: Corpus) -> None:
    """Drop validation/test dialogues whose exact text also occurs in train (train/test leakage)."""
    train = {dialogue_key(d) for d in corpus.splits["train"]}
    for split in ("validation", "test"):
        before = corpus.splits[split]
        kept = [d for d in before if dialogue_key(d) not in train]
        corpus.removed_duplicates[split] = len(before) - len(kept)
        corpus.splits[split] = kept
