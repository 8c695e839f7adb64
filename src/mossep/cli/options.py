"""Options that several commands share (separate, batch, evaluate, info, convert), defined once."""
import typer

from ..chunking import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP_SECONDS

MODEL = typer.Option(None, "--model", help="Checkpoint: a mossep .safetensors, an official ModelScope MossFormer or "
                     "MossFormer2 directory, a Hugging Face MossFormer2 folder (config.json + pytorch_model.bin) or a "
                     "ClearerVoice checkpoint; or a model name from `mossep models` (or hf:ORG/NAME, "
                     "modelscope:ORG/NAME), downloaded on first use. Default: the bundled model.")
MODEL_RATE = typer.Option(None, "--model-rate", help="Sample rate of a checkpoint that does not store one "
                          "(ClearerVoice MossFormer2); by default read from its folder/file name (8k, 16K).")
DEVICE = typer.Option("auto", "--device", help="cpu, cuda or auto.")
THREADS = typer.Option(None, "--threads", help="CPU threads for torch.")
FAST = typer.Option(False, "--fast", help="Use the faster inference path (mossep.fast).")
CHUNK = typer.Option(None, "--chunk-seconds", help="Chunk length for long inputs; 0 = whole file at once. "
                     f"Default: {DEFAULT_CHUNK_SECONDS:g}.")
OVERLAP = typer.Option(None, "--overlap-seconds", help=f"Overlap between chunks. Default: {DEFAULT_OVERLAP_SECONDS:g}.")
PASSES = typer.Option(None, "--passes", help="1: separate once; 2: also separate the polarity-inverted mixture "
                      "and average the two (better, twice the time). Default: what the checkpoint recommends "
                      "(the bundled model: 2), else 1.")
WIENER = typer.Option(None, "--wiener/--no-wiener", help="Re-take each speaker from the mixture through soft "
                      "time-frequency masks made from the model's estimates (removes artefacts of weaker models). "
                      "Default: what the checkpoint recommends (the bundled model: on), else off.")
NOISY_MODEL = typer.Option(None, "--noisy-model", help="Model for the chunks that sound noisy or reverberant "
                           "(a name or checkpoint, same rate and talkers as --model); `none`: --model for every "
                           "chunk. Default: what the model recommends (the default model: the bundled `robust`).")
BACKEND = typer.Option("torch", "--backend", help="torch, or onnx: run the network in onnxruntime (CPU, exact; "
                       "exported once into the cache folder, see `mossep export`; needs the onnx extra).")


def noisy_choice(name: str | None) -> str | bool | None:
    """--noisy-model: None (the model's recommendation), `none` (False: no noisy-room model) or a model."""
    return False if name is not None and str(name).lower() == "none" else name
