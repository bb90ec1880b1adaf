use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::*;

/// ffprobe's view of a file: stream kinds in order, the video stream and the duration.
struct Probe {
    kinds: Vec<String>,
    video: Option<Value>,
    duration_s: f64,
    keyframes: usize,
}

fn probe(path: &Path) -> Probe {
    let json = run(
        Command::new("ffprobe")
            .args(["-v", "error", "-of", "json", "-show_entries"])
            .arg("stream=codec_type,codec_name,width,height,r_frame_rate:format=duration")
            .arg(path),
        "ffmpeg",
    )
    .unwrap();
    let info: Value = serde_json::from_slice(&json).unwrap();
    let streams = info["streams"].as_array().unwrap();
    let kinds = streams.iter().map(|s| s["codec_type"].as_str().unwrap().to_string()).collect();
    let video = streams.iter().find(|s| s["codec_type"] == "video").cloned();
    let duration_s = info["format"]["duration"].as_str().unwrap().parse().unwrap();
    let flags = run(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v", "-show_entries", "packet=flags", "-of", "csv=p=0"])
            .arg(path),
        "ffmpeg",
    )
    .unwrap();
    let keyframes = String::from_utf8(flags).unwrap().lines().filter(|l| l.contains('K')).count();
    Probe { kinds, video, duration_s, keyframes }
}

/// Loudness in dBFS of the audio between `a` and `b` seconds, decoded by ffmpeg.
fn loudness_db(samples: &[i16], (a, b): (f64, f64)) -> f64 {
    let rate = f64::from(speech::SAMPLE_RATE);
    let part = &samples[(a * rate) as usize..(b * rate) as usize];
    let power = part.iter().map(|&s| (f64::from(s) / 32768.0).powi(2)).sum::<f64>() / part.len() as f64;
    10.0 * power.max(1e-12).log10()
}

fn decoded_audio(path: &Path) -> Vec<i16> {
    let rate = speech::SAMPLE_RATE.to_string();
    let pcm = run(
        Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-i"])
            .arg(path)
            .args(["-f", "s16le", "-ac", "1", "-ar", &rate, "pipe:1"]),
        "ffmpeg",
    )
    .unwrap();
    pcm.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

fn hashes(media: &MediaSet) -> Vec<String> {
    [&media.video, &media.silent_video, &media.audio_only].iter().map(|p| file_sha256(p).unwrap()).collect()
}

fn modified(media: &MediaSet) -> Vec<SystemTime> {
    [&media.video, &media.silent_video, &media.audio_only]
        .iter()
        .map(|p| fs::metadata(p).unwrap().modified().unwrap())
        .collect()
}

fn assert_close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() < 0.1, "{what}: {got} s, want {want} s");
}

#[test]
fn media_files_have_the_promised_streams_and_speech() {
    let dir = tempfile::tempdir().unwrap();
    let media = synthesize(&dir.path().join("media")).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&media).unwrap());

    assert_eq!(media.duration_s.fract(), 0.0, "duration {} is not whole seconds", media.duration_s);
    assert!((30.0..60.0).contains(&media.duration_s), "duration {}", media.duration_s);
    assert_eq!(media.sentences.len(), 20);
    assert_eq!(media.speech_spans.len(), media.sentences.len());
    assert!(media.speech_spans.windows(2).all(|w| w[0].1 < w[1].0), "spans overlap: {:?}", media.speech_spans);
    assert!(media.speech_spans.iter().all(|&(a, b)| 0.5 < b - a && b < media.duration_s));

    let video = probe(&media.video);
    assert_eq!(video.kinds, ["video", "audio"]);
    assert_close(video.duration_s, media.duration_s, "video");
    let stream = video.video.unwrap();
    assert_eq!(
        (&stream["codec_name"], &stream["width"], &stream["height"]),
        (&"h264".into(), &640.into(), &360.into())
    );
    assert_eq!(stream["r_frame_rate"], "25/1");
    assert_eq!(video.keyframes as f64, media.duration_s, "one keyframe per second");

    let silent = probe(&media.silent_video);
    assert_eq!(silent.kinds, ["video"]);
    assert_close(silent.duration_s, media.duration_s, "silent video");

    let audio = probe(&media.audio_only);
    assert_eq!(audio.kinds, ["audio"]);
    assert_close(audio.duration_s, media.duration_s, "audio");

    // Speech where the spans say; digital silence before it and in the pauses between groups.
    let samples = decoded_audio(&media.audio_only);
    for &span in &media.speech_spans {
        let db = loudness_db(&samples, span);
        assert!(db > -40.0, "span {span:?} is quiet: {db:.1} dBFS");
    }
    let gaps = media.speech_spans.windows(2).map(|w| (w[0].1, w[1].0)).filter(|(a, b)| b - a > 2.0);
    let mut gaps: Vec<_> = gaps.map(|(a, b)| (a + 0.3, b - 0.3)).collect();
    assert_eq!(gaps.len(), speech::GROUPS.len() - 1, "pauses between groups");
    gaps.push((0.1, media.speech_spans[0].0 - 0.1));
    for gap in gaps {
        let db = loudness_db(&samples, gap);
        assert!(db < -70.0, "pause {gap:?} is not silent: {db:.1} dBFS");
    }

    if media.face_picture.is_some() {
        assert_eq!(media.face_spans.len(), 2);
        assert!(media.face_spans.iter().all(|&(a, b)| a < b && b <= media.duration_s));
    }
}

#[test]
fn media_second_call_is_a_no_op_and_a_damaged_file_is_remade_identically() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("media");
    let first = synthesize_with(&out, None).unwrap();
    assert_eq!(first.face_picture, None);
    assert!(first.face_spans.is_empty());
    let (hashes_before, modified_before) = (hashes(&first), modified(&first));

    let start = Instant::now();
    let second = synthesize_with(&out, None).unwrap();
    assert!(start.elapsed() < Duration::from_secs(2), "second call took {:?}", start.elapsed());
    assert_eq!(second, first);
    assert_eq!(modified(&second), modified_before, "files were rewritten");

    let manifest: Value = serde_json::from_str(&fs::read_to_string(out.join(MANIFEST)).unwrap()).unwrap();
    assert_eq!(manifest["sha256"][VIDEO], hashes_before[0].as_str());
    assert_eq!(manifest["video"], first.video.to_str().unwrap());

    fs::write(&first.silent_video, b"damaged").unwrap();
    let third = synthesize_with(&out, None).unwrap();
    assert_eq!(third, first);
    assert_eq!(hashes(&third), hashes_before, "a second synthesis gave different bytes");
    let leftovers: Vec<_> = fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 4, "files in {}: {leftovers:?}", out.display());
}

#[test]
fn media_face_picture_comes_from_the_env_var() {
    let dir = tempfile::tempdir().unwrap();
    let picture = dir.path().join("face.png");
    fs::write(&picture, b"png").unwrap();
    assert_eq!(face_picture(Some(picture.clone().into())).unwrap(), Some(picture));

    let err = face_picture(Some("/no/such/face.png".into())).unwrap_err().to_string();
    assert_eq!(err, "VS_FACE_PICTURE=/no/such/face.png is not a file");

    let default = face_picture(None).unwrap();
    assert_eq!(default.is_some(), Path::new(DEBIAN_FACE_PICTURE).is_file());
    assert_eq!(face_picture(Some("".into())).unwrap(), default);
}

#[test]
fn media_face_is_shown_around_every_second_group() {
    let groups = [(1.0, 8.0), (10.5, 19.0), (21.5, 29.0), (31.5, 40.0)];
    assert_eq!(face_spans(&groups, 41.0), [(8.0, 21.5), (29.0, 41.0)]);
    assert_eq!(face_spans(&groups[..3], 30.0), [(8.0, 21.5)]);
}
