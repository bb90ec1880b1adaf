//! The pipeline's work without the runtime: the stages' own tool runs (their
//! crates build the commands), in one process, on local files, with the
//! DAG's per-clip parallelism. No HTTP, no object store, no cold starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, ensure, Context as _};
use detect_objects::{DecoderKind, Detector, DetectorConfig};
use detect_speech::SpeechParams;
use serde::Serialize;

use crate::pipeline::Pipeline;

/// The stage parameters of the pipeline, and the detector loaded once, as a
/// warm detect-objects function holds it.
pub struct Direct {
    sample_rate: u32,
    speech: SpeechParams,
    crf: u32,
    audio_rate: u32,
    frames_per_minute: u32,
    transcribe: transcribe::Options,
    detector: Detector,
    max_parallel: usize,
}

/// One direct run: its time, per phase, and what it produced.
#[derive(Debug, Clone, Serialize)]
pub struct DirectRun {
    pub total_ms: f64,
    /// User + system time of this process and the tools it ran (set by the caller).
    pub cpu_s: f64,
    pub extract_audio_ms: f64,
    pub detect_speech_ms: f64,
    pub cut_clips_ms: f64,
    /// Every clip through compress, transcribe, sample and detect.
    pub fan_out_ms: f64,
    pub clips: usize,
    pub frames: usize,
    pub detections: usize,
    /// Each clip's time in each fan-out step, by the function that does it there.
    pub clip_steps_ms: BTreeMap<&'static str, Vec<f64>>,
}

/// What one clip produced, and how long each step took.
struct ClipDone {
    frames: usize,
    detections: usize,
    steps_ms: [(&'static str, f64); 5],
}

impl Direct {
    /// Read the parameters every function receives and load the model.
    pub fn new(pipeline: &Pipeline) -> anyhow::Result<Direct> {
        let p = &pipeline.parameters;
        let transcribe = transcribe::Options::default();
        transcribe::check_tools(&transcribe)?;
        let decoder: DecoderKind = p.detector.model.decoder().parse()?;
        let config = DetectorConfig {
            score_threshold: p.detector.score_threshold as f32,
            nms_iou: p.detector.nms_iou as f32,
            input_size: p.detector.input_size,
        };
        let detector = Detector::load(pipeline.detector_model(), decoder, config)?;
        Ok(Direct {
            sample_rate: p.speech.sample_rate,
            speech: SpeechParams {
                top_db_min: p.speech.top_db.min as u32,
                top_db_max: p.speech.top_db.max as u32,
                min_sentence_s: p.speech.sentence_seconds.min,
                max_sentence_s: p.speech.sentence_seconds.max,
            },
            crf: p.compress.crf,
            audio_rate: p.compress.audio_sample_rate,
            frames_per_minute: p.frames.per_minute,
            transcribe,
            detector,
            max_parallel: pipeline.dag.fan_out.as_ref().map_or(1, |f| f.max_parallel.max(1)),
        })
    }

    /// The whole pipeline for `video`, in a temp dir removed afterwards.
    pub fn run(&self, video: &Path) -> anyhow::Result<DirectRun> {
        let work = tempfile::Builder::new().prefix("bench-direct-").tempdir()?;
        let work = work.path();
        let started = Instant::now();

        let audio = work.join("audio.wav");
        run(extract_audio::probe_command(video), work)?;
        run(extract_audio::command(video, self.sample_rate, &audio), work)?;
        let extracted = Instant::now();

        let (power, sample_rate) = detect_speech::read_wav_power(&audio)?;
        let segments = detect_speech::detect_segments_in(&power, sample_rate, &self.speech)?;
        write_json(&work.join("segments.json"), &segments)?;
        let detected = Instant::now();

        let mut clips = Vec::with_capacity(segments.clips.len());
        for clip in &segments.clips {
            let out = work.join(cut_clips::clip_name(clip.index));
            run(cut_clips::command(video, clip.start_s, clip.end_s, &out), work)?;
            clips.push(out);
        }
        let cut = Instant::now();

        let done = in_parallel(&clips, self.max_parallel, |index, clip| {
            let dir = work.join(format!("clip-{index:04}"));
            std::fs::create_dir(&dir)?;
            self.clip(clip, &dir).with_context(|| format!("clip {}", clip.display()))
        })?;
        let ms = |from: Instant, to: Instant| (to - from).as_secs_f64() * 1000.0;
        let mut clip_steps_ms: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
        for (function, ms) in done.iter().flat_map(|d| d.steps_ms) {
            clip_steps_ms.entry(function).or_default().push(ms);
        }
        Ok(DirectRun {
            total_ms: started.elapsed().as_secs_f64() * 1000.0,
            cpu_s: 0.0,
            extract_audio_ms: ms(started, extracted),
            detect_speech_ms: ms(extracted, detected),
            cut_clips_ms: ms(detected, cut),
            fan_out_ms: cut.elapsed().as_secs_f64() * 1000.0,
            clips: clips.len(),
            frames: done.iter().map(|d| d.frames).sum(),
            detections: done.iter().map(|d| d.detections).sum(),
            clip_steps_ms,
        })
    }

    /// clip-audio, compress-clip, transcribe, sample-frames and detect-objects for one clip, in `dir`.
    fn clip(&self, clip: &Path, dir: &Path) -> anyhow::Result<ClipDone> {
        let started = Instant::now();
        let (video, audio) = (dir.join("video.mp4"), dir.join("audio.wav"));
        run(clip_audio::command(clip, self.audio_rate, &audio), dir)?;
        let extracted = Instant::now();
        run(compress_clip::command(clip, self.crf, &video), dir)?;
        let compressed = Instant::now();

        transcribe::check_input(&audio)?;
        let output = transcribe::command(&audio, &self.transcribe)
            .current_dir(dir)
            .output()
            .map_err(|e| transcribe::spawn_error(e, &self.transcribe))?;
        write_json(&dir.join("transcript.json"), &transcribe::finish(&output)?)?;
        let transcribed = Instant::now();

        let frames_dir = dir.join("frames");
        std::fs::create_dir(&frames_dir)?;
        run(sample_frames::command(&video, self.frames_per_minute, &frames_dir), dir)?;
        let names = sample_frames::frame_names(&frames_dir)?;
        let sampled = Instant::now();
        let mut detections = Vec::with_capacity(names.len());
        for name in &names {
            let path = frames_dir.join(name);
            let picture = image::ImageReader::open(&path)?
                .with_guessed_format()?
                .decode()
                .with_context(|| format!("{} is not a picture", path.display()))?
                .to_rgb8();
            detections.push(self.detector.detect(&picture)?);
        }
        write_json(&dir.join("detections.json"), &detections)?;
        let ms = |from: Instant, to: Instant| (to - from).as_secs_f64() * 1000.0;
        Ok(ClipDone {
            frames: names.len(),
            detections: detections.iter().map(Vec::len).sum(),
            steps_ms: [
                ("clip-audio", ms(started, extracted)),
                ("compress-clip", ms(extracted, compressed)),
                ("transcribe", ms(compressed, transcribed)),
                ("sample-frames", ms(transcribed, sampled)),
                ("detect-objects", sampled.elapsed().as_secs_f64() * 1000.0),
            ],
        })
    }
}

/// Run a tool in `dir` as the stage runtime does (no stdin, output captured);
/// a non-zero exit is an error with the end of its stderr.
fn run(mut cmd: Command, dir: &Path) -> anyhow::Result<Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let output = cmd
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{program}`"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        bail!("`{program}` failed ({}): {}", output.status, tail[tail.len().saturating_sub(3)..].join(" | "));
    }
    Ok(output)
}

fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(value)?).with_context(|| format!("write {}", path.display()))
}

/// `work` for every item, at most `limit` at a time; results in item order.
fn in_parallel<T: Send>(
    items: &[PathBuf],
    limit: usize,
    work: impl Fn(usize, &Path) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<anyhow::Result<T>>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..limit.min(items.len()) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(index) else { break };
                let result = work(index, item);
                results.lock().unwrap()[index] = Some(result);
            });
        }
    });
    let results = results.into_inner().unwrap();
    ensure!(results.iter().all(Option::is_some), "a clip worker stopped without a result");
    results.into_iter().flatten().collect()
}
