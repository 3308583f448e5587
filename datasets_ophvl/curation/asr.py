"""Stage `asr`: transcribe videos that came without a transcript, with a transformers Whisper pipeline.

As in the paper, the default model is Whisper large-v3 with segment timestamps. The pipeline is built on first use,
so a build whose videos all have transcripts (or no audio) never loads it. Audio is decoded with PyAV to 16 kHz mono
float32, the rate Whisper's feature extractor expects. A video without an audio stream has no speech: it gets an
empty transcript (the `silent` stage then files it as a silent video) and no model call.

By default long audio goes through Whisper's own sequential long-form decoding (the pipeline hands it the whole
input); `asr.chunk_length_s` switches to the pipeline's batched chunking, faster on a GPU but less exact at chunk
borders.

`transcribe` can be injected: any callable with the pipeline's call signature and output
(`{"text": str, "chunks": [{"timestamp": (start, end), "text": str}, ...]}`).
"""

import logging
from dataclasses import dataclass

import numpy as np

from .base import BaseStage, Sentence, VideoItem, load_pipeline, setting


logger = logging.getLogger(__name__)

SAMPLING_RATE = 16_000


@dataclass
class AsrSettings:
    model: str = setting("openai/whisper-large-v3", "Whisper model id or local folder (loaded only when needed)")
    device: str | None = setting(None, "device for the model, e.g. cuda:0 or cpu (default: the first GPU, else cpu)")
    dtype: str = setting("auto", "model dtype: auto (float16 on GPU, float32 on CPU), float32, float16, bfloat16")
    language: str | None = setting(None, "spoken language, e.g. en (default: Whisper detects it)")
    chunk_length_s: float | None = setting(None, "chunk audio into this many seconds and batch (default: long-form)")
    batch_size: int = setting(1, "chunks per forward pass when chunk_length_s is set")
    max_new_tokens: int | None = setting(None, "cap on generated tokens per 30 s window (default: the model's)")


def decode_audio(path, sampling_rate: int = SAMPLING_RATE) -> tuple[np.ndarray, float]:
    """The first audio stream as mono float32 at `sampling_rate`, and its start relative to the container start (s).

    Returns an empty array when the file has no audio stream.
    """
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return np.zeros(0, np.float32), 0.0
        stream = container.streams.audio[0]
        origin = container.start_time / 1_000_000 if container.start_time is not None else 0.0
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
        pieces, offset = [], None
        for frame in container.decode(stream):
            if offset is None and frame.pts is not None:
                offset = float(frame.pts * frame.time_base) - origin
            pieces.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
        pieces.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    audio = np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, np.float32)
    return audio, max(0.0, offset or 0.0)


def chunks_to_segments(output: dict, duration: float, offset: float = 0.0) -> list[Sentence]:
    """Timed segments from an ASR pipeline output. A missing end (Whisper's last chunk) becomes the next start or
    the audio's end; a missing start becomes the previous end."""
    chunks = output.get("chunks") or []
    if not chunks and (output.get("text") or "").strip():
        chunks = [{"timestamp": (0.0, duration), "text": output["text"]}]
    segments, previous_end = [], 0.0
    for i, chunk in enumerate(chunks):
        start, end = (tuple(chunk.get("timestamp") or (None, None)) + (None, None))[:2]
        start = previous_end if start is None else float(start)
        if end is None:
            starts = (c["timestamp"][0] for c in chunks[i + 1:] if c.get("timestamp") and c["timestamp"][0] is not None)
            following = next(starts, None)
            end = following if following is not None else max(duration, start)
        end = float(end)
        previous_end = end
        text = " ".join(str(chunk.get("text", "")).split())
        if text:
            segments.append(Sentence(len(segments), start + offset, end + offset, text))
    return segments


class AsrStage(BaseStage):
    """Transcribe audio of videos without a transcript (Whisper through `transformers.pipeline`)."""

    name = "asr"
    requires = ("probe",)
    Settings = AsrSettings

    def __init__(self, settings=None, transcribe=None, **overrides):
        super().__init__(settings, **overrides)
        self._transcribe = transcribe
        self.calls = 0

    @property
    def loaded(self) -> bool:
        return self._transcribe is not None

    def models(self) -> list[tuple[str, str]]:
        return [] if self.loaded else [("model", "automatic-speech-recognition")]

    def _load(self):
        s = self.settings
        return load_pipeline("automatic-speech-recognition", self.model_source("model"), s.device, s.dtype,
                             gpu_default="float16", hint="pass --set asr.model=PATH (a local Whisper folder) or "
                             "--skip-stage asr")

    def __call__(self, item: VideoItem):
        if item.segments is not None:
            return item  # the user's transcript wins
        if not item.probe.has_audio:
            item.segments, item.transcript_source = [], "none (no audio)"
            return item
        try:
            audio, offset = decode_audio(item.path)
        except Exception as error:  # noqa: BLE001 - a broken audio track makes the video silent, not the build fail
            logger.warning("%s: cannot decode audio (%s)", item.path, error)
            item.drop("audio track could not be decoded")
            item.segments, item.transcript_source = [], "none (audio unreadable)"
            return item
        if audio.size == 0:
            item.segments, item.transcript_source = [], "none (empty audio)"
            return item
        if self._transcribe is None:
            self._transcribe = self._load()
        s = self.settings
        generate_kwargs = {"task": "transcribe"}
        if s.language:
            generate_kwargs["language"] = s.language
        if s.max_new_tokens:
            generate_kwargs["max_new_tokens"] = s.max_new_tokens
        kwargs = {"return_timestamps": True, "generate_kwargs": generate_kwargs}
        if s.chunk_length_s:
            kwargs.update(chunk_length_s=s.chunk_length_s, batch_size=s.batch_size, ignore_warning=True)
        output = self._transcribe({"raw": audio, "sampling_rate": SAMPLING_RATE}, **kwargs)
        self.calls += 1
        item.segments = chunks_to_segments(output, duration=audio.size / SAMPLING_RATE, offset=offset)
        item.transcript_source = "asr"
        return item

    def close(self):
        self._transcribe = None
