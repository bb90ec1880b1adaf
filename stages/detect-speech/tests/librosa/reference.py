"""Reference intervals of `librosa.effects.split` for `tests/librosa.rs`.

Synthesizes a deterministic 16-bit mono signal with integer arithmetic only
(an LCG, an integer "magic circle" oscillator, shifts and non-negative integer
divisions), so that the Rust test rebuilds the identical int16 samples from the
parameters written here. The samples go to a WAV that librosa loads like any
file; `librosa.effects.split` then runs for each `TOP_DB`, and `reference.json`
beside this script keeps the intervals with the versions that made them.

Run it (from the repository root) with the versions it was last run with:

    python3 -m venv /tmp/librosa-venv
    /tmp/librosa-venv/bin/pip install librosa==0.11.0 numpy==2.4.6 scipy==1.17.1 \
        soundfile==0.14.0 numba==0.68.1 llvmlite==0.50.0
    /tmp/librosa-venv/bin/python stages/detect-speech/tests/librosa/reference.py

(made with Python 3.11.7). The script refuses a signal on which some frame lies
within `MIN_MARGIN_DB` of a threshold: there librosa's float32 arithmetic and
the crate's float64 sums could rightly disagree. Change a seed or a level then.
"""

import hashlib
import json
import pathlib
import platform
import tempfile
import wave

import librosa
import numpy as np
import scipy
import soundfile

SAMPLE_RATE = 16000
FRAME_LENGTH = 2048
HOP_LENGTH = 512
TOP_DB = [20, 30, 40, 60]
# No frame may lie closer than this to `-top_db`; see the module doc.
MIN_MARGIN_DB = 1e-3
# Frames this close to a threshold count as "near" it in the JSON.
NEAR_DB = 1.0

NOISE_SEED = 20240611
FLOOR_SEED = 777
# Peak of the low-level noise under everything but the "zero" part (about -69 dBFS).
FLOOR_LEVEL = 12

# One after the other. `level` is a peak in int16 units, `k` an oscillator step
# (frequency = k * sample_rate / (2 pi 65536)), `fade` a linear fade in and out.
PARTS = [
    {"kind": "floor", "length": 4000},
    {"kind": "tone", "length": 9600, "level": 16000, "k": 11324, "fade": 320},  # 440 Hz
    {"kind": "floor", "length": 1000},  # shorter than a frame
    {"kind": "tone", "length": 6400, "level": 520, "k": 25736, "fade": 1600},  # 1 kHz, -30 dB
    {"kind": "floor", "length": 4800},
    {"kind": "speech", "length": 12800, "level": 24000, "fade": 800},
    {"kind": "floor", "length": 1500},  # shorter than a frame
    {"kind": "speech", "length": 11200, "level": 1400, "fade": 400},
    {"kind": "zero", "length": 4800},  # digital silence
    {"kind": "floor", "length": 4800},
    {"kind": "tone", "length": 8000, "level": 90, "k": 17000, "fade": 800},  # -45 dB
    {"kind": "floor", "length": 3000},
    {"kind": "speech", "length": 16000, "level": 4000, "fade": 4000},  # 0.25 s fades
    {"kind": "floor", "length": 3200},
    {"kind": "tone", "length": 4800, "level": 29, "k": 8000, "fade": 480},  # -55 dB
    {"kind": "floor", "length": 6000},
    {"kind": "speech", "length": 9037, "level": 12000, "fade": 200},  # reaches the end
]

# Syllable-rate (about 4 Hz) oscillator step of the speech-like parts.
SYLLABLE_K = 103


class Lcg:
    """32-bit LCG (Numerical Recipes constants); `next` is in [-32768, 32767]."""

    def __init__(self, seed):
        self.state = seed & 0xFFFFFFFF

    def next(self):
        self.state = (self.state * 1664525 + 1013904223) & 0xFFFFFFFF
        return (self.state >> 16) - 32768


class Circle:
    """Minsky's integer circle: `s` swings within about +-16384, exactly reproducible."""

    def __init__(self, k):
        self.k, self.c, self.s = k, 16384, 0

    def next(self):
        self.c -= (self.s * self.k) >> 16
        self.s += (self.c * self.k) >> 16
        return self.s


def fade_q15(n, length, fade):
    """Linear fade in and out, in [0, 32768]."""
    ramp = min(n, length - 1 - n)
    return 32768 if ramp >= fade else ramp * 32768 // fade


def synthesize():
    noise, floor = Lcg(NOISE_SEED), Lcg(FLOOR_SEED)
    out = []
    for part in PARTS:
        kind, length = part["kind"], part["length"]
        osc = Circle(part["k"]) if kind == "tone" else None
        syllable = Circle(SYLLABLE_K) if kind == "speech" else None
        lowpass = 0
        for n in range(length):
            v = 0
            if kind == "tone":
                v = (osc.next() * part["level"]) >> 14
            elif kind == "speech":
                lowpass += (noise.next() - lowpass) >> 2
                env = syllable.next() + 16384  # [0, 32768]
                env = (env * env) >> 15
                v = (((lowpass * part["level"]) >> 15) * env) >> 15
            if kind in ("tone", "speech"):
                v = (v * fade_q15(n, length, part["fade"])) >> 15
            f = floor.next()  # drawn in every part, so parts do not shift the floor
            if kind != "zero":
                v += (f * FLOOR_LEVEL) >> 15
            out.append(max(-32768, min(32767, v)))
    return np.array(out, dtype=np.int16)


def frame_db(y, dtype):
    """`_signal_to_frame_nonsilent`'s dB per frame, computed in `dtype`."""
    mse = librosa.feature.rms(
        y=y.astype(dtype), frame_length=FRAME_LENGTH, hop_length=HOP_LENGTH, dtype=dtype
    )
    return librosa.amplitude_to_db(mse[..., 0, :], ref=np.max, top_db=None)


def main():
    here = pathlib.Path(__file__).resolve().parent
    samples = synthesize()
    pcm = samples.astype("<i2").tobytes()

    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "signal.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            w.writeframes(pcm)
        wav_bytes = path.read_bytes()
        y, sr = librosa.load(path, sr=None, mono=True)
    assert sr == SAMPLE_RATE, sr
    assert y.dtype == np.float32, y.dtype
    # What wav.rs does: i / 32768.
    assert np.array_equal(y, samples.astype(np.float32) / np.float32(32768))

    db32 = frame_db(y, np.float32)
    db64 = frame_db(y, np.float64)
    cases = []
    for top_db in TOP_DB:
        intervals = librosa.effects.split(
            y, top_db=top_db, ref=np.max, frame_length=FRAME_LENGTH, hop_length=HOP_LENGTH
        )
        # The dB above are the ones split decides on.
        non_silent = librosa.effects._signal_to_frame_nonsilent(
            y, frame_length=FRAME_LENGTH, hop_length=HOP_LENGTH, ref=np.max, top_db=top_db
        )
        assert np.array_equal(non_silent, db32 > -top_db)
        margin = np.abs(db32.astype(np.float64) + top_db)
        closest = float(margin.min())
        if closest < MIN_MARGIN_DB:
            raise SystemExit(
                f"a frame lies {closest:.2e} dB from -{top_db} dB (< {MIN_MARGIN_DB}); "
                "change a seed or a level"
            )
        assert np.array_equal(non_silent, db64 > -top_db)
        cases.append(
            {
                "top_db": top_db,
                "intervals": [[int(s), int(e)] for s, e in intervals],
                "closest_frame_db_to_threshold": round(closest, 6),
                "frames_within_1db": int((margin < NEAR_DB).sum()),
            }
        )

    reference = {
        "generated_by": "stages/detect-speech/tests/librosa/reference.py",
        "python": platform.python_version(),
        "librosa": librosa.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "soundfile": soundfile.__version__,
        "call": f"librosa.effects.split(y, top_db=top_db, ref=np.max, "
        f"frame_length={FRAME_LENGTH}, hop_length={HOP_LENGTH})",
        "load": "librosa.load(path, sr=None, mono=True)",
        "signal": {
            "sample_rate": SAMPLE_RATE,
            "n_samples": len(samples),
            "n_frames": len(db32),
            "noise_seed": NOISE_SEED,
            "floor_seed": FLOOR_SEED,
            "floor_level": FLOOR_LEVEL,
            "syllable_k": SYLLABLE_K,
            "parts": PARTS,
            "samples_sha256": hashlib.sha256(pcm).hexdigest(),
            "wav_sha256": hashlib.sha256(wav_bytes).hexdigest(),
        },
        "max_abs_db_f32_minus_f64": float(np.abs(db32.astype(np.float64) - db64).max()),
        "min_margin_db": MIN_MARGIN_DB,
        "cases": cases,
    }
    out = here / "reference.json"
    out.write_text(json.dumps(reference, indent=1) + "\n")
    print(f"wrote {out}")
    for case in cases:
        print(
            f"top_db {case['top_db']}: {len(case['intervals'])} intervals, "
            f"closest frame {case['closest_frame_db_to_threshold']} dB, "
            f"{case['frames_within_1db']} within {NEAR_DB} dB"
        )


if __name__ == "__main__":
    main()
