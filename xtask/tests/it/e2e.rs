//! The whole pipeline on real media through the local runtime: `verify` on
//! the synthesized video, each stage's artifacts inspected, bad inputs
//! classified, and 20 concurrent requests with every artifact accounted for.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};
use stage_runtime::{Artifact, Artifacts, Invocation};

use crate::support::{self, Runtime};
use ::transcribe::overlap::{said_between, Overlap, MIN_CLIP_OVERLAP};

/// The repository's pipeline with the test folder's `.cache` shared with the repository's.
fn runtime() -> Runtime {
    let rt = Runtime::up(&support::repo_pipeline(|yaml| yaml));
    std::os::unix::fs::symlink(support::repo().join(".cache"), rt.dir.path().join(".cache")).unwrap();
    rt
}

fn request(rt: &Runtime, id: &str, uri: String) -> (u16, Value) {
    let inv = Invocation {
        request_id: id.to_string(),
        scope: None,
        inputs: Artifacts::from([("video".to_string(), Artifact::One(uri))]),
    };
    rt.invoke("orchestrator", &inv)
}

fn download(rt: &Runtime, uri: &str, dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    rt.rt.block_on(rt.store.download(uri, &path)).unwrap();
    path
}

fn stream<'a>(probe: &'a Value, kind: &str) -> Option<&'a Value> {
    probe["streams"].as_array().unwrap().iter().find(|s| s["codec_type"] == kind)
}

#[test]
fn verify_passes_and_every_stage_does_its_work_on_real_media() {
    let _heavy = support::heavy();
    let media = support::media();
    let rt = runtime();
    let out = rt.xtask(&["verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "verify failed\nstdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("function         calls  cold"), "{stdout}");
    let request_id = stdout.split("request ").last().unwrap().trim().trim_end_matches(')').to_string();
    let state = rt.state(&request_id).expect("the request state exists");
    let work = tempfile::tempdir().unwrap();

    // extract-audio: mono WAV at the speech detector's rate.
    let audio = support::probe(&download(&rt, state["artifacts"]["audio"].as_str().unwrap(), work.path(), "audio.wav"));
    let a = stream(&audio, "audio").unwrap();
    assert_eq!((a["sample_rate"].as_str(), a["channels"].as_u64()), (Some("22050"), Some(1)));

    // detect-speech → cut-clips: one clip per segment, as long as its segment.
    let segments = rt.get_json(state["artifacts"]["segments"].as_str().unwrap());
    let segments = segments["clips"].as_array().unwrap();
    let clips = state["artifacts"]["clips"].as_array().unwrap();
    assert!(segments.len() >= 3, "{segments:?}");
    assert_eq!(clips.len(), segments.len());
    for (segment, clip) in segments.iter().zip(clips) {
        let probe = support::probe(&download(&rt, clip.as_str().unwrap(), work.path(), "clip.mp4"));
        let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
        let expected = segment["end_s"].as_f64().unwrap() - segment["start_s"].as_f64().unwrap();
        assert!((duration - expected).abs() < 0.15, "clip {duration}s for a {expected}s segment");
        assert!(stream(&probe, "video").is_some() && stream(&probe, "audio").is_some());
    }

    // The dataflow DAG: per clip, the frames' branch does not wait for the
    // transcript (without a query it needs only the clip). Not a timing
    // check: transcribe can only be sent once clip-audio has answered, while
    // compress-clip is sent with clip-audio, as soon as the clip exists, so
    // it is sent first however long either takes; its own branch follows it.
    let span = |function: &str, scope: &str| {
        let record = state["steps"].as_array().unwrap().iter().find(|r| r["function"] == function && r["scope"] == scope);
        let record = record.unwrap_or_else(|| panic!("no {function} step in {scope}: {state:#}"));
        (record["started_at_ms"].as_u64().unwrap(), record["ended_at_ms"].as_u64().unwrap())
    };
    assert_eq!(state["items"].as_object().unwrap().len(), segments.len());
    for scope in state["items"].as_object().unwrap().keys() {
        let (clip_audio, transcribe, compress) = (span("clip-audio", scope), span("transcribe", scope), span("compress-clip", scope));
        assert!(clip_audio.1 <= transcribe.0, "{scope}: transcribe {transcribe:?} was sent before clip-audio {clip_audio:?} answered");
        assert!(compress.0 < transcribe.0, "{scope}: compress-clip {compress:?} waited for transcribe {transcribe:?}");
        let (frames, detect) = (span("sample-frames", scope), span("detect-objects", scope));
        assert!(compress.1 <= frames.0 && frames.1 <= detect.0, "{scope}: compress-clip {compress:?}, sample-frames {frames:?}, detect-objects {detect:?} out of order");
    }
    // No query: every clip is a hit of the answer, with its frames.
    let result = rt.get_json(state["result"].as_str().expect("the answer is published"));
    assert_eq!(result["query"], Value::Null, "{result:#}");
    let hits = result["hits"].as_array().unwrap();
    assert_eq!(hits.len(), segments.len(), "{result:#}");
    for (hit, segment) in hits.iter().zip(segments) {
        assert_eq!((&hit["start_s"], hit["frames"].as_array().map(Vec::is_empty)), (&segment["start_s"], Some(false)), "{hit:#}");
    }

    let sentences: Vec<String> = serde_json::from_value(media["sentences"].clone()).unwrap();
    let spans: Vec<(f64, f64)> = serde_json::from_value(media["speech_spans"].clone()).unwrap();
    assert_eq!(sentences.len(), spans.len(), "{media:#}");
    let mut sentences_in_clips = 0;
    let mut faces = 0;
    for (scope, items) in state["items"].as_object().unwrap() {
        // compress-clip: H.264 without sound, and 16 kHz mono WAV.
        let video = support::probe(&download(&rt, items["compressed"].as_str().unwrap(), work.path(), "video.mp4"));
        assert_eq!(stream(&video, "video").unwrap()["codec_name"], "h264", "{scope}");
        assert!(stream(&video, "audio").is_none(), "{scope}");
        let wav = support::probe(&download(&rt, items["audio_16k"].as_str().unwrap(), work.path(), "audio16.wav"));
        let a = stream(&wav, "audio").unwrap();
        assert_eq!((a["sample_rate"].as_str(), a["channels"].as_u64()), (Some("16000"), Some(1)), "{scope}");
        // transcribe: most content words of the sentences spoken in the clip
        // (their middle inside its segment), and words with times inside the clip.
        let transcript = rt.get_json(items["transcript"].as_str().unwrap());
        let index = clips.iter().position(|clip| *clip == items["clip"]).unwrap_or_else(|| panic!("{scope}: clip {} is not one of {clips:?}", items["clip"]));
        let (from, to) = (segments[index]["start_s"].as_f64().unwrap(), segments[index]["end_s"].as_f64().unwrap());
        let said = said_between(&sentences, &spans, from, to);
        sentences_in_clips += said.len();
        let overlap = Overlap::of(&said.join(" "), transcript["text"].as_str().unwrap());
        eprintln!("{scope} ({from}..{to} s): {overlap}");
        overlap.assert_at_least(MIN_CLIP_OVERLAP, &format!("{scope} ({from}..{to} s)"));
        let words = transcript["words"].as_array().unwrap();
        assert!(!words.is_empty(), "{scope}: {transcript}");
        let clip_s: f64 = video["format"]["duration"].as_str().unwrap().parse().unwrap();
        for w in words {
            assert!(w["start_s"].as_f64().unwrap() <= w["end_s"].as_f64().unwrap() && w["end_s"].as_f64().unwrap() <= clip_s + 0.5);
        }
        // sample-frames: one frame per 5 s (12 per minute).
        let frames = items["frames"].as_array().unwrap();
        let expected = (clip_s / 5.0).round() as usize;
        assert!(frames.len().abs_diff(expected) <= 1, "{scope}: {} frames for {clip_s}s", frames.len());
        // detect-objects: one entry per frame, boxes inside the frame.
        let detections = rt.get_json(items["detections"].as_str().unwrap());
        assert!(!frames.is_empty(), "{scope}: no frames sampled");
        assert_eq!(detections["frames"].as_array().unwrap().len(), frames.len(), "{scope}");
        for frame in detections["frames"].as_array().unwrap() {
            let (w, h) = (frame["width"].as_f64().unwrap(), frame["height"].as_f64().unwrap());
            for d in frame["detections"].as_array().unwrap() {
                faces += 1;
                assert_eq!(d["label"], "face");
                assert!(d["x1"].as_f64().unwrap() >= 0.0 && d["x2"].as_f64().unwrap() <= w, "{d}");
                assert!(d["y1"].as_f64().unwrap() >= 0.0 && d["y2"].as_f64().unwrap() <= h, "{d}");
            }
        }
    }
    assert_eq!(sentences_in_clips, sentences.len(), "every sentence of the test video falls in one clip: {segments:?}");
    // The box checks above hold for no boxes: the face the video shows must be found.
    if !media["face_spans"].as_array().unwrap().is_empty() {
        assert!(faces > 0, "the test video shows a face ({}) but no frame has a detection", media["face_spans"]);
    }
}

/// `cargo xtask search VIDEO QUERY --json` on the test video; the answer and
/// the request's state.
fn search(rt: &Runtime, video: &str, query: &str) -> (Value, Value) {
    let out = rt.xtask(&["search", video, query, "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "search {query:?} failed: {stderr}");
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    let id = stderr.split("request ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap_or_else(|| panic!("no request id: {stderr}"));
    let state = rt.state(id).unwrap_or_else(|| panic!("no state for {id}"));
    assert_eq!(rt.get_json(state["result"].as_str().unwrap()), answer);
    (answer, state)
}

/// Every object under the request is its input, its state, its answer or an
/// artifact its state names: nothing a stage wrote is left unnamed.
fn assert_every_object_named(rt: &Runtime, id: &str, state: &Value) {
    let mut named: BTreeSet<String> = BTreeSet::new();
    let mut collect = |artifacts: &Value| {
        for value in artifacts.as_object().unwrap().values().filter(|value| !value.is_boolean()) {
            for uri in value.as_array().cloned().unwrap_or_else(|| vec![value.clone()]) {
                named.insert(rt.store.key_of(uri.as_str().unwrap()).unwrap());
            }
        }
    };
    collect(&state["artifacts"]);
    for items in state["items"].as_object().unwrap().values() {
        collect(items);
    }
    named.insert(format!("requests/{id}/state.json"));
    named.insert(rt.store.key_of(state["result"].as_str().expect("the answer is published")).unwrap());
    let stored: BTreeSet<String> = rt.keys(&format!("requests/{id}/")).into_iter().collect();
    assert_eq!(stored, named, "{id}");
}

#[test]
fn search_finds_the_clip_that_says_the_word_and_looks_only_there() {
    let _heavy = support::heavy();
    let media = support::media();
    let rt = runtime();
    let video = media["video"].as_str().unwrap();
    let sentences: Vec<&str> = media["sentences"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let spans = media["speech_spans"].as_array().unwrap();
    // `glass` is said once, in the second group's second sentence.
    let said: Vec<usize> = (0..sentences.len()).filter(|&i| sentences[i].to_lowercase().contains("glass")).collect();
    assert_eq!(said.len(), 1, "{sentences:?}");
    let (from, to) = (spans[said[0]][0].as_f64().unwrap(), spans[said[0]][1].as_f64().unwrap());

    let (answer, state) = search(&rt, video, "Glass!");
    let hits = answer["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{answer:#}");
    let hit = &hits[0];
    assert_eq!(hit["clip"], 1, "the second clip: {answer:#}");
    let words = hit["words"].as_array().unwrap();
    assert_eq!(words.len(), 1, "{hit:#}");
    let at = words[0]["start_s"].as_f64().unwrap();
    assert!(from - 0.5 <= at && at <= to + 0.5, "`glass` heard at {at}s, said in {from}..{to}s: {hit:#}");
    assert!(hit["start_s"].as_f64().unwrap() <= at && at <= hit["end_s"].as_f64().unwrap(), "{hit:#}");
    let frames = hit["frames"].as_array().unwrap();
    assert!(!frames.is_empty(), "{hit:#}");
    for frame in frames {
        let t = frame["time_s"].as_f64().unwrap();
        assert!(hit["start_s"].as_f64().unwrap() <= t && t <= hit["end_s"].as_f64().unwrap(), "{frame}");
    }
    let clips = state["items"].as_object().unwrap().len();
    assert!(clips >= 3, "{state:#}");
    let summary = &state["summary"];
    assert_eq!(summary["match-transcript"]["invocations"], clips, "{summary:#}");
    for function in ["compress-clip", "sample-frames", "detect-objects"] {
        assert_eq!(summary[function]["invocations"], 1, "{function} runs for the matching clip only: {summary:#}");
        assert_eq!(summary[function]["skipped"], clips - 1, "{summary:#}");
    }

    let (answer, state) = search(&rt, video, "dashwood");
    assert_eq!((answer["query"].as_str(), answer["hits"].as_array().map(Vec::len)), (Some("dashwood"), Some(0)), "{answer:#}");
    let summary = &state["summary"];
    assert_eq!(summary["detect-objects"]["invocations"], 0, "{summary:#}");
    assert_eq!(summary["detect-objects"]["skipped"], state["items"].as_object().unwrap().len(), "{summary:#}");
}

#[test]
fn music_without_speech_is_searched_through_and_says_nothing() {
    let _heavy = support::heavy();
    let rt = runtime();
    // 23 s of synthesized music, no voice: a melody of tones with a harmonic,
    // a note every 0.4 s, in four phrases of 5 s with 1 s rests between them.
    let music = rt.dir.path().join("music.mp4");
    let note = "220*pow(2\\,floor(mod(2.5*t\\,7))/7)";
    let melody = format!("aevalsrc=0.25*lt(mod(t\\,6)\\,5)*(sin(2*PI*t*{note})+0.4*sin(4*PI*t*{note})):s=44100:d=23");
    let made = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", &melody, "-f", "lavfi", "-i", "testsrc=s=160x120:r=10:d=23"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest"])
        .arg(&music)
        .status()
        .expect("ffmpeg runs (apt-get install ffmpeg)");
    assert!(made.success(), "ffmpeg made the music video");

    // An energy split cannot tell music from speech: the phrases are cut and
    // transcribed like sentences, and the search then finds nothing in them.
    // That is a search that succeeded with no hit, not an error: the video
    // is well-formed and was searched through.
    let (answer, state) = search(&rt, music.to_str().unwrap(), "glass");
    assert_eq!(state["status"], "succeeded", "{state:#}");
    assert_eq!(answer["hits"].as_array().map(Vec::len), Some(0), "{answer:#}");
    let clips = state["items"].as_object().unwrap().len();
    assert!(clips >= 1, "the music's phrases were cut into clips: {state:#}");
    let summary = &state["summary"];
    for function in ["clip-audio", "transcribe", "match-transcript"] {
        assert_eq!(summary[function]["invocations"], clips, "{function} ran for every phrase: {summary:#}");
    }
    for function in ["compress-clip", "sample-frames", "detect-objects"] {
        assert_eq!((&summary[function]["invocations"], &summary[function]["skipped"]), (&json!(0), &json!(clips)), "{summary:#}");
    }
    let id = state["request_id"].as_str().unwrap();
    assert_every_object_named(&rt, id, &state);
}

#[test]
fn bad_inputs_end_in_classified_errors_and_nothing_half_written() {
    let _heavy = support::heavy();
    let media = support::media();
    let rt = runtime();
    let corrupt = {
        let mut bytes = std::fs::read(media["video"].as_str().unwrap()).unwrap();
        bytes.truncate(4096);
        bytes.extend(std::iter::repeat_n(0x5a, 4096));
        bytes
    };
    // Bit rot: every 499th byte of the whole video with one bit flipped
    // (its length kept, its container and streams both hit).
    let flipped = {
        let mut bytes = std::fs::read(media["video"].as_str().unwrap()).unwrap();
        bytes.iter_mut().step_by(499).for_each(|b| *b ^= 0x10);
        bytes
    };
    let upload = |id: &str, file: &str| rt.upload(Path::new(media[file].as_str().unwrap()), &format!("requests/{id}/input/video.mp4"));
    // Beyond the declared `parameters.input`: 2 GiB (a sparse file, zeros
    // that are never a video: refused from the store's metadata before any
    // download), and three hours (black and silent, refused from its header).
    let huge = rt.dir.path().join("huge.mp4");
    std::fs::File::create(&huge).unwrap().set_len(2 << 30).unwrap();
    let long = rt.dir.path().join("three-hours.mp4");
    let made = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "color=c=black:s=32x32:r=1", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono"])
        .args(["-t", "10800", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-b:a", "8k"])
        .arg(&long)
        .status()
        .expect("ffmpeg runs (apt-get install ffmpeg)");
    assert!(made.success(), "ffmpeg made the three-hour video");
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("zero-byte", rt.put_bytes("requests/zero-byte/input/video.mp4", Vec::new()), 422, "empty_input"),
        ("corrupt", rt.put_bytes("requests/corrupt/input/video.mp4", corrupt), 422, "bad_media"),
        ("bit-flipped", rt.put_bytes("requests/bit-flipped/input/video.mp4", flipped), 422, "bad_media"),
        ("no-audio", upload("no-audio", "silent_video"), 422, "no_audio"),
        ("audio-only", upload("audio-only", "audio_only"), 422, "no_video"),
        ("missing", rt.store.uri("requests/missing/input/video.mp4"), 404, "missing_object"),
        ("dot-dot", "s3://videosearcher/requests/dot-dot/../../etc/passwd".to_string(), 400, "invalid_key"),
        ("wrong-bucket", "s3://elsewhere/requests/wrong-bucket/input/video.mp4".to_string(), 400, "invalid_uri"),
        ("too-large", rt.upload(&huge, "requests/too-large/input/video.mp4"), 422, "input_too_large"),
        ("too-long", rt.upload(&long, "requests/too-long/input/video.mp4"), 422, "input_too_long"),
    ];
    std::fs::remove_file(&huge).unwrap();
    for (id, uri, status, code) in cases {
        let (got, body) = request(&rt, id, uri);
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{id}: {body}");
        let state = rt.state(id).unwrap_or_else(|| panic!("{id}: no request state"));
        assert_eq!(state["status"], "failed", "{id}");
        assert_eq!(state["error"]["code"], code, "{id}: {state}");
        // Nothing but the input and the state: no stage left a partial output.
        let keys: BTreeSet<String> = rt.keys(&format!("requests/{id}/")).into_iter().collect();
        let allowed: BTreeSet<String> = [format!("requests/{id}/input/video.mp4"), format!("requests/{id}/state.json")].into();
        assert!(keys.is_subset(&allowed), "{id}: {keys:?}");
    }
    // A body that is not an invocation: refused at the door, no request begun.
    let before = rt.keys("requests/").len();
    let (status, body) = rt.rt.block_on(async {
        let response = reqwest::Client::new().post(format!("{}/function/orchestrator", rt.gateway)).body("{\"request_id\": ").send().await.unwrap();
        (response.status().as_u16(), response.json::<Value>().await.unwrap())
    });
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_json")), "{body}");
    assert_eq!(rt.keys("requests/").len(), before, "nothing stored for a body that is not JSON");
    // Every function is still up and serving after all of that.
    let (status, _) = request(&rt, "after", rt.store.uri("requests/after/input/none.mp4"));
    assert_eq!(status, 404);
}

#[test]
fn twenty_concurrent_requests_account_for_every_artifact() {
    let _heavy = support::heavy();
    let media = support::media();
    let rt = runtime();
    // The first two sentence groups of the test video: two clips, ~19 s.
    let short = rt.dir.path().join("short.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i", media["video"].as_str().unwrap(), "-t", "19", "-c", "copy"])
        .arg(&short)
        .status()
        .unwrap();
    assert!(status.success());
    let ids: Vec<String> = (0..20).map(|i| format!("concurrent-{i:02}")).collect();
    let uris: Vec<String> = ids.iter().map(|id| rt.upload(&short, &format!("requests/{id}/input/video.mp4"))).collect();
    let rt = &rt;
    let answers = rt.rt.block_on(async {
        let calls = ids.iter().zip(&uris).map(|(id, uri)| {
            let inv = Invocation {
                request_id: id.clone(),
                scope: None,
                inputs: Artifacts::from([("video".to_string(), Artifact::One(uri.clone()))]),
            };
            async move { rt.invoke_async("orchestrator", &inv).await }
        });
        futures::future::join_all(calls).await
    });
    for (id, (status, body)) in ids.iter().zip(&answers) {
        assert_eq!(*status, 200, "{id}: {body}");
        let state = rt.state(id).unwrap();
        assert_eq!(state["status"], "succeeded", "{id}");
        assert!(!state["items"].as_object().unwrap().is_empty(), "{id}: no clips");
        // One attempt per step: no checksum, temp-file or tool failure was retried away.
        let ran: Vec<&Value> = state["steps"].as_array().unwrap().iter().filter(|step| step["status"] != "skipped").collect();
        assert!(!ran.is_empty(), "{id}: no step ran: {state:#}");
        for step in ran {
            let attempts = step["attempts"].as_array().unwrap();
            assert_eq!(attempts.len(), 1, "{id}: {step}");
        }
        assert_every_object_named(rt, id, &state);
    }
    for function in ["extract-audio", "detect-speech", "cut-clips", "clip-audio", "compress-clip", "transcribe", "sample-frames", "detect-objects"] {
        let log = rt.log(function);
        let mut invocations = 0;
        for line in log.lines().filter(|l| l.starts_with('{')) {
            let line: Value = serde_json::from_str(line).unwrap_or(json!({}));
            if line.get("status").is_some() {
                assert_eq!(line["status"], 200, "{function}: {line}");
                invocations += 1;
            }
        }
        assert!(invocations >= ids.len(), "{function} logged {invocations} invocations for {} requests:\n{log}", ids.len());
    }
}
