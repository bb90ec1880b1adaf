//! The rules on a real transcript: PocketSphinx's output captured by the
//! transcribe crate (espeak-ng speech from the xtask test video), parsed by
//! transcribe itself, so a change of its spelling or timing shows up here.

const CLIP: &str = include_str!("../../transcribe/testdata/clip-two-sentences.txt");

#[test]
fn finds_the_phrase_in_captured_pocketsphinx_output() {
    let transcript = transcribe::parse(CLIP).unwrap();
    let m = match_transcript::find("A glass of Water?", &transcript).unwrap();
    assert!(m.matched);
    assert_eq!(m.hits.len(), 1);
    let hit = &m.hits[0];
    let words: Vec<&str> = hit.words.iter().map(|w| w.word.as_str()).collect();
    assert_eq!(words, ["a", "glass", "of", "water"]);
    assert_eq!((hit.start_s, hit.end_s), (4.76, 5.6));
}

#[test]
fn every_occurrence_of_a_common_word_in_captured_output() {
    let transcript = transcribe::parse(CLIP).unwrap();
    let expected = transcript.words.iter().filter(|w| w.word == "the").count();
    assert!(expected >= 3, "the capture has {expected} `the`");
    let m = match_transcript::find("THE", &transcript).unwrap();
    assert_eq!(m.hits.len(), expected);
    assert!(!match_transcript::find("hous", &transcript).unwrap().matched);
}
