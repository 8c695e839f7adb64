"""The names mossep knows for pretrained models: which hub, repository, revision and files each one is, and
what it is good for. Also the parsing of full hub ids (`hf:ORG/NAME`, `modelscope:ORG/NAME`, optionally
`@REVISION`) and the choice of files for a repository that is not in the list."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Mapping

from ..errors import MossepError

HUGGINGFACE, MODELSCOPE, BUNDLED = "huggingface", "modelscope", "bundled"
DEFAULT_REVISION = {HUGGINGFACE: "main", MODELSCOPE: "master"}
PREFIXES = {"hf": HUGGINGFACE, "huggingface": HUGGINGFACE, "modelscope": MODELSCOPE, "ms": MODELSCOPE}
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a branch, tag or commit (it names a cache folder)
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    hub: str  # HUGGINGFACE, MODELSCOPE or BUNDLED
    repo: str = ""  # "org/name" on the hub
    revision: str = ""  # a commit hash where the hub's history is known, else the branch
    files: tuple[str, ...] = ()  # the files the loader needs; () = chosen from the hub's listing (choose_files)
    sha256: Mapping[str, str] = field(default_factory=dict)  # content hashes pinned here, checked besides the hub's
    arch: str = ""
    sample_rate: int | None = None
    talkers: int | None = None
    size: str = ""  # download size
    licence: str = ""
    use: str = ""  # when to pick it

    @property
    def pinned(self) -> bool:
        """Whether the revision is one exact commit (not a branch that can move)."""
        return bool(_COMMIT.match(self.revision))

    @property
    def hub_id(self) -> str:
        return "bundled" if self.hub == BUNDLED else f"{'hf' if self.hub == HUGGINGFACE else 'modelscope'}:{self.repo}"


_STANDALONE = ("config.json", "pytorch_model.bin")  # the repos hold the weights twice; the .ckpt triple is not fetched

REGISTRY: tuple[ModelEntry, ...] = (
    ModelEntry("default", BUNDLED, arch="MossFormer", sample_rate=8000, talkers=2, size="7 MB",
               licence="Apache-2.0", use="works offline on a fresh machine; clean 2-talker speech on a CPU, "
               "weaker than the official models (10.8 dB SI-SNRi on Libri2Mix); hands the chunks that sound noisy "
               "or reverberant to `robust`"),
    ModelEntry("robust", BUNDLED, arch="MossFormer", sample_rate=8000, talkers=2, size="7 MB",
               licence="Apache-2.0", use="works offline; noisy or reverberant 2-talker recordings: the default "
               "fine-tuned on real noise and rooms (+2.9 dB SI-SNRi in noise, +2.5 dB in noise and a room, -1.1 dB "
               "on clean speech against the default); mossformer2-whamr-2spk is far stronger where you can fetch it"),
    ModelEntry("mossformer-8k", MODELSCOPE, "damo/speech_mossformer_separation_temporal_8k", "master",
               ("configuration.json", "encoder.bin", "decoder.bin", "masknet.bin"), arch="MossFormer",
               sample_rate=8000, talkers=2, size="170 MB", licence="code: Apache-2.0",
               use="the published MossFormer (42 M): clean 2-talker 8 kHz speech"),
    ModelEntry("mossformer2-8k", MODELSCOPE, "damo/speech_mossformer2_separation_temporal_8k", "master",
               ("configuration.json", "pytorch_model.pt"), arch="MossFormer2", sample_rate=8000, talkers=2,
               size="224 MB", licence="code: Apache-2.0",
               use="ModelScope's MossFormer2 (56 M): clean 2-talker 8 kHz speech, stronger than MossFormer"),
    ModelEntry("mossformer2-librimix-2spk", HUGGINGFACE, "alibabasglab/mossformer2-librimix-2spk", "main",
               _STANDALONE, arch="MossFormer2", sample_rate=8000, talkers=2, size="224 MB", licence="MIT",
               use="2 talkers in clean read speech (trained on LibriMix)"),
    ModelEntry("mossformer2-wsj0mix-3spk", HUGGINGFACE, "alibabasglab/mossformer2-wsj0mix-3spk", "main",
               _STANDALONE, arch="MossFormer2", sample_rate=8000, talkers=3, size="225 MB", licence="MIT",
               use="3 overlapping talkers (trained on WSJ0-3mix)"),
    ModelEntry("mossformer2-whamr-2spk", HUGGINGFACE, "alibabasglab/mossformer2-whamr-2spk", "main",
               _STANDALONE, arch="MossFormer2", sample_rate=8000, talkers=2, size="224 MB", licence="MIT",
               use="2 talkers in noisy, reverberant rooms (trained on WHAMR!)"),
    ModelEntry("mossformer2-ss-16k", HUGGINGFACE, "alibabasglab/MossFormer2_SS_16K",
               "407cb030cd66340918ebb6c8cc63b18f8592cdbe", ("last_best_checkpoint", "last_best_checkpoint.pt"),
               sha256={"last_best_checkpoint.pt": "00a3a48bda492db1e829b85dd443f8f43a43039a3e90f1a24962ea9caf14a11a"},
               arch="MossFormer2", sample_rate=16000, talkers=2, size="670 MB", licence="Apache-2.0",
               use="ClearerVoice's 16 kHz model: 2 talkers in wideband recordings (keeps the band above 4 kHz)"),
)


def parse_hub_id(spec: str) -> ModelEntry | None:
    """`hf:ORG/NAME[@REV]` or `modelscope:ORG/NAME[@REV]` -> an entry (the registered one when the repository is
    listed and no other revision is asked for); None for anything else."""
    prefix, sep, rest = spec.partition(":")
    if not sep or prefix.lower() not in PREFIXES:
        return None
    hub = PREFIXES[prefix.lower()]
    repo, _, revision = rest.partition("@")
    if not _REPO.match(repo) or (revision and not _REVISION.match(revision)):
        raise MossepError(f"{spec}: a hub id is {prefix}:ORG/NAME (optionally @REVISION)")
    for entry in REGISTRY:
        if entry.hub == hub and entry.repo.lower() == repo.lower() and revision in ("", entry.revision):
            return entry
    return ModelEntry(spec, hub, repo, revision or DEFAULT_REVISION[hub])


def is_bundled(name: str) -> bool:
    """Whether `name` is one of the models shipped inside mossep (usable offline, never fetched)."""
    entry = lookup(name)
    return entry is not None and entry.hub == BUNDLED


def lookup(spec: str) -> ModelEntry | None:
    """The entry a model spec names: a listed name (any case), a listed repository (`ORG/NAME` or its last
    part), or a full hub id; None when it is none of these."""
    hub_entry = parse_hub_id(spec)
    if hub_entry is not None:
        return hub_entry
    key = spec.lower()
    for entry in REGISTRY:
        if key in (entry.name, entry.repo.lower(), entry.repo.lower().rpartition("/")[2]) and key:
            return entry
    return None


# Layouts of the checkpoint folders mossep loads, most specific first: (files that identify it, files to fetch).
# A ClearerVoice folder is a pointer file that names the weights file (fetched after reading the pointer).
LAYOUTS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("config.json", "pytorch_model.bin"), ("config.json", "pytorch_model.bin")),
    (("config.json", "encoder.ckpt", "decoder.ckpt", "masknet.ckpt"),
     ("config.json", "encoder.ckpt", "decoder.ckpt", "masknet.ckpt")),
    (("configuration.json", "pytorch_model.pt"), ("configuration.json", "pytorch_model.pt")),
    (("configuration.json", "encoder.bin", "decoder.bin", "masknet.bin"),
     ("configuration.json", "encoder.bin", "decoder.bin", "masknet.bin")),
)
POINTERS = ("last_best_checkpoint", "last_checkpoint")


def choose_files(listing: list[str], read_pointer: Callable[[str], str], where: str) -> tuple[str, ...]:
    """The files to fetch from a repository that is not in the registry, from its file list. read_pointer(name)
    fetches a ClearerVoice pointer file and returns its text."""
    names = set(listing)
    for marker, files in LAYOUTS:
        if names.issuperset(marker):
            return files
    for pointer in POINTERS:
        if pointer in names:
            lines = read_pointer(pointer).strip().splitlines()
            target = lines[0].strip().rpartition("/")[2] if lines else ""
            if target not in names:
                raise MossepError(f"{where}: {pointer} names {target or 'nothing'}, which the repository does not hold")
            return (pointer, target)
    native = [n for n in listing if n.endswith(".safetensors") and "/" not in n]
    if len(native) == 1:
        return (native[0],)
    raise MossepError(f"{where}: holds no checkpoint layout mossep knows (files: {', '.join(sorted(names)[:12])})")
