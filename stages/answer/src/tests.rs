use serde_json::json;
use stage_runtime::ErrorKind;

use super::*;

const TWELVE: NonZeroU32 = NonZeroU32::new(12).unwrap();

/// Three clips: 0–10 s, 12.3–21 s, 30–40 s.
fn segments() -> Segments {
    serde_json::from_value(json!({"sample_rate": 22050, "clips": [
        {"index": 0, "start_s": 0.0, "end_s": 10.0},
        {"index": 1, "start_s": 12.3, "end_s": 21.0},
        {"index": 2, "start_s": 30.0, "end_s": 40.0},
    ]}))
    .unwrap()
}

/// An item as the orchestrator writes it; `matched` None: no query.
fn item(index: usize, matched: Option<bool>) -> serde_json::Value {
    let scope = format!("clips-{index:04}");
    let mut artifacts = json!({
        "clip": format!("s3://b/{scope}/clip.mp4"),
        "transcript": format!("s3://b/{scope}/transcript.json"),
    });
    if let Some(flag) = matched {
        artifacts["match"] = json!(format!("s3://b/{scope}/match.json"));
        artifacts["matched"] = json!(flag);
    }
    let mut skipped = json!([]);
    if matched != Some(false) {
        artifacts["frames"] = json!([format!("s3://b/{scope}/frame-0001.jpg"), format!("s3://b/{scope}/frame-0002.jpg")]);
        artifacts["detections"] = json!(format!("s3://b/{scope}/detections.json"));
    } else {
        skipped = json!([{"function": "sample-frames", "reason": "`matched` is false"},
                         {"function": "detect-objects", "reason": "`matched` is false"}]);
    }
    json!({"scope": scope, "index": index, "artifacts": artifacts, "skipped": skipped})
}

fn items(list: Vec<serde_json::Value>) -> Items {
    serde_json::from_value(json!({"over": "clips", "item": "clip", "items": list})).unwrap()
}

fn transcript(index: usize) -> Transcript {
    let text = ["the house is on the left", "i would like a glass of water", "i need some food"][index];
    Transcript { text: text.to_string(), words: vec![] }
}

/// A match.json for the query `Glass`: with `matched`, one hit at 2.9–3.3 s in the clip.
fn match_doc(matched: bool) -> Match {
    let hits = if matched {
        vec![json!({"start_s": 2.9, "end_s": 3.3, "words": [{"word": "glass", "start_s": 2.9, "end_s": 3.3}]})]
    } else {
        vec![]
    };
    serde_json::from_value(json!({"query": "Glass", "terms": ["glass"], "matched": matched, "hits": hits})).unwrap()
}

/// detections.json of clip `index`: two frames, a face in the second.
fn detections(index: usize) -> Detections {
    let scope = format!("clips-{index:04}");
    serde_json::from_value(json!({"model": "centerface.onnx", "decoder": "centerface", "frames": [
        {"frame": format!("s3://b/{scope}/frame-0001.jpg"), "width": 640, "height": 360, "detections": []},
        {"frame": format!("s3://b/{scope}/frame-0002.jpg"), "width": 640, "height": 360, "detections": [
            {"label": "face", "score": 0.91, "x1": 10.0, "y1": 20.0, "x2": 110.0, "y2": 140.0}]},
    ]}))
    .unwrap()
}

/// What the function would read for `items`: match.json when present,
/// transcript and detections for hits.
fn fetch(items: &Items) -> Vec<Fetched> {
    items
        .items
        .iter()
        .map(|item| {
            let hit = item.is_hit().unwrap();
            Fetched {
                matched: item.uri("match").unwrap().map(|_| match_doc(hit)),
                transcript: hit.then(|| transcript(item.index)),
                detections: (hit && item.uri("detections").unwrap().is_some()).then(|| detections(item.index)),
            }
        })
        .collect()
}

fn answer(items: &Items) -> Result<Answer, StageError> {
    assemble(&segments(), items, &fetch(items), TWELVE)
}

fn clips_of(answer: &Answer) -> Vec<usize> {
    answer.hits.iter().map(|h| h.clip).collect()
}

#[test]
fn without_a_query_every_clip_is_a_hit_with_no_words() {
    let answer = answer(&items(vec![item(0, None), item(1, None), item(2, None)])).unwrap();
    assert_eq!(answer.query, None);
    assert_eq!(answer.clips, 3);
    assert_eq!(clips_of(&answer), [0, 1, 2]);
    assert!(answer.hits.iter().all(|h| h.words.is_empty()));
    assert_eq!(answer.hits[2].text, "i need some food");
    let times: Vec<f64> = answer.hits[2].frames.iter().map(|f| f.time_s).collect();
    assert_eq!(times, [30.0, 35.0]);
}

#[test]
fn a_query_matching_one_clip_answers_it_in_source_time() {
    let answer = answer(&items(vec![item(0, Some(false)), item(1, Some(true)), item(2, Some(false))])).unwrap();
    assert_eq!(answer.query.as_deref(), Some("Glass"));
    assert_eq!(clips_of(&answer), [1]);
    let hit = &answer.hits[0];
    assert_eq!((hit.scope.as_str(), hit.start_s, hit.end_s), ("clips-0001", 12.3, 21.0));
    assert_eq!(hit.text, "i would like a glass of water");
    assert_eq!(hit.words, [HitWord { word: "glass".into(), start_s: 15.2, end_s: 15.6 }]);
    let frames: Vec<(&str, f64, usize)> = hit.frames.iter().map(|f| (f.frame.as_str(), f.time_s, f.detections.len())).collect();
    assert_eq!(frames, [("s3://b/clips-0001/frame-0001.jpg", 12.3, 0), ("s3://b/clips-0001/frame-0002.jpg", 17.3, 1)]);
    assert_eq!(hit.frames[1].detections[0], Found { label: "face".into(), score: 0.91, bbox: [10.0, 20.0, 110.0, 140.0] });
    assert!(hit.skipped.is_empty());
}

#[test]
fn frame_times_follow_the_sampling_rate() {
    let list = items(vec![item(0, None), item(1, None), item(2, None)]);
    let answer = assemble(&segments(), &list, &fetch(&list), NonZeroU32::new(6).unwrap()).unwrap();
    let times: Vec<f64> = answer.hits[1].frames.iter().map(|f| f.time_s).collect();
    assert_eq!(times, [12.3, 22.3]);
}

#[test]
fn no_match_is_an_empty_answer_that_keeps_the_query() {
    let answer = answer(&items(vec![item(0, Some(false)), item(1, Some(false)), item(2, Some(false))])).unwrap();
    assert_eq!(answer.query.as_deref(), Some("Glass"));
    assert_eq!(answer.clips, 3);
    assert!(answer.hits.is_empty());
}

#[test]
fn a_flag_that_contradicts_its_match_json_is_an_internal_error() {
    let list = items(vec![item(0, Some(false)), item(1, Some(true)), item(2, Some(false))]);
    let mut fetched = fetch(&list);
    fetched[1].matched = Some(match_doc(false));
    let err = assemble(&segments(), &list, &fetched, TWELVE).unwrap_err();
    assert_eq!((err.kind, err.message.as_str()), (ErrorKind::Internal, "item clips-0001: `matched` is true but its match.json says false"));
}

#[test]
fn items_matched_against_different_queries_are_an_internal_error() {
    let list = items(vec![item(0, Some(false)), item(1, Some(true)), item(2, Some(false))]);
    let mut fetched = fetch(&list);
    fetched[2].matched.as_mut().unwrap().query = "water".into();
    let err = assemble(&segments(), &list, &fetched, TWELVE).unwrap_err();
    assert_eq!(err.message, "item clips-0002 was matched against \"water\", others against \"Glass\"");
}

#[test]
fn a_hit_without_detections_has_no_frames_and_says_why() {
    let mut bare = item(1, Some(true));
    bare["artifacts"].as_object_mut().unwrap().remove("detections");
    bare["skipped"] = json!([{"function": "detect-objects", "reason": "`frames` is empty"}]);
    let answer = answer(&items(vec![item(0, Some(false)), bare, item(2, Some(false))])).unwrap();
    let hit = &answer.hits[0];
    assert_eq!(hit.clip, 1);
    assert!(hit.frames.is_empty());
    assert_eq!(hit.words.len(), 1);
    assert_eq!(hit.skipped, [Skipped { function: "detect-objects".into(), reason: "`frames` is empty".into() }]);
}

#[test]
fn hits_are_in_clip_order() {
    let answer = answer(&items(vec![item(2, None), item(0, None), item(1, None)])).unwrap();
    assert_eq!(clips_of(&answer), [0, 1, 2]);
}

#[test]
fn an_item_outside_the_segments_is_an_internal_error() {
    let list = items(vec![item(0, None), item(1, None), item(3, None)]);
    let err = check(&segments(), &list).unwrap_err();
    assert_eq!((err.kind, err.code.as_str()), (ErrorKind::Internal, "inconsistent_request"));
    assert_eq!(err.message, "item clips-0003 is clip 3, but segments.json has 3 clips");
    assert_eq!(err.kind.status(), 500);
}

#[test]
fn items_must_cover_each_clip_once() {
    let err = check(&segments(), &items(vec![item(0, None), item(1, None)])).unwrap_err();
    assert_eq!(err.message, "segments.json has clip 2, but no item is clip 2");
    let mut twin = item(1, None);
    twin["scope"] = json!("clips-0009");
    let err = check(&segments(), &items(vec![item(0, None), item(1, None), twin, item(2, None)])).unwrap_err();
    assert_eq!(err.message, "items clips-0001 and clips-0009 are both clip 1");
}

#[test]
fn items_are_all_matched_or_none_is() {
    let err = check(&segments(), &items(vec![item(0, Some(true)), item(1, None), item(2, Some(false))])).unwrap_err();
    assert_eq!(err.message, "item clips-0000 was matched against the query, item clips-0001 was not");
    let mut half = item(0, Some(true));
    half["artifacts"].as_object_mut().unwrap().remove("match");
    let err = items(vec![half]).items[0].is_hit().unwrap_err();
    assert_eq!(err.message, "item clips-0000 has `matched` but no `match`");
    let mut wrong = item(0, Some(true));
    wrong["artifacts"]["matched"] = json!("s3://b/x");
    assert_eq!(items(vec![wrong]).items[0].is_hit().unwrap_err().kind, ErrorKind::Internal);
}

#[test]
fn no_clips_is_an_empty_answer() {
    let answer = assemble(&Segments { clips: vec![] }, &items(vec![]), &[], TWELVE).unwrap();
    assert_eq!(answer, Answer { query: None, clips: 0, hits: vec![] });
}

#[test]
fn result_json_has_the_documented_shape() {
    let answer = answer(&items(vec![item(0, Some(false)), item(1, Some(true)), item(2, Some(false))])).unwrap();
    // Through the text, as result.json is written: scores are f32 and print as such.
    let written: serde_json::Value = serde_json::from_str(&serde_json::to_string(&answer).unwrap()).unwrap();
    assert_eq!(
        written,
        json!({"query": "Glass", "clips": 3, "hits": [{
            "clip": 1, "scope": "clips-0001", "start_s": 12.3, "end_s": 21.0,
            "text": "i would like a glass of water",
            "words": [{"word": "glass", "start_s": 15.2, "end_s": 15.6}],
            "frames": [
                {"frame": "s3://b/clips-0001/frame-0001.jpg", "time_s": 12.3, "detections": []},
                {"frame": "s3://b/clips-0001/frame-0002.jpg", "time_s": 17.3, "detections": [
                    {"label": "face", "score": 0.91, "box": [10.0, 20.0, 110.0, 140.0]}]},
            ],
            "skipped": [],
        }]})
    );
}
