//! The scoring of the detection evaluation (`benches/eval.rs`), which lives in the bench so that
//! it stays out of the library: the bench file is compiled here as a module.

#[allow(dead_code)]
#[path = "../benches/eval.rs"]
mod eval;

use std::collections::BTreeMap;

use eval::{Counts, Span, char_offset, parse_corpus, parse_presidio, score_record};

#[test]
fn overlap_of_the_same_entity_is_a_match() {
    let labels = [
        Span::new(10, 20, "EMAIL_ADDRESS"),
        Span::new(30, 40, "PHONE_NUMBER"),
        Span::new(50, 60, "US_SSN"),
    ];
    let predictions = [
        // Partial overlap counts.
        Span::new(15, 25, "EMAIL_ADDRESS"),
        // Right place, wrong entity: a false positive, and the label is missed.
        Span::new(30, 40, "US_SSN"),
        // Touching is not overlapping.
        Span::new(60, 70, "US_SSN"),
        // An entity the tool is not scored on is ignored.
        Span::new(80, 90, "AWS_ACCESS_KEY_ID"),
    ];
    let mut counts = BTreeMap::new();
    let errors = score_record(
        &labels,
        &predictions,
        &["EMAIL_ADDRESS", "PHONE_NUMBER", "US_SSN"],
        &mut counts,
    );
    let c = |e: &str| counts.get(e).copied().unwrap_or_default();
    assert_eq!(
        c("EMAIL_ADDRESS"),
        Counts {
            predicted: 1,
            correct: 1,
            labelled: 1,
            found: 1
        }
    );
    assert_eq!(
        c("PHONE_NUMBER"),
        Counts {
            predicted: 0,
            correct: 0,
            labelled: 1,
            found: 0
        }
    );
    assert_eq!(
        c("US_SSN"),
        Counts {
            predicted: 2,
            correct: 0,
            labelled: 1,
            found: 0
        }
    );
    assert!(!counts.contains_key("AWS_ACCESS_KEY_ID"));
    assert_eq!(
        errors.false_positives,
        vec![Span::new(30, 40, "US_SSN"), Span::new(60, 70, "US_SSN")]
    );
    assert_eq!(
        errors.misses,
        vec![
            Span::new(30, 40, "PHONE_NUMBER"),
            Span::new(50, 60, "US_SSN")
        ]
    );
}

#[test]
fn one_prediction_can_find_two_labels() {
    let labels = [Span::new(0, 5, "JWT"), Span::new(6, 10, "JWT")];
    let mut counts = BTreeMap::new();
    score_record(&labels, &[Span::new(0, 10, "JWT")], &["JWT"], &mut counts);
    assert_eq!(
        counts["JWT"],
        Counts {
            predicted: 1,
            correct: 1,
            labelled: 2,
            found: 2
        }
    );
}

#[test]
fn precision_recall_f1() {
    let c = Counts {
        predicted: 4,
        correct: 3,
        labelled: 6,
        found: 3,
    };
    assert_eq!(c.precision(), Some(0.75));
    assert_eq!(c.recall(), Some(0.5));
    assert!((c.f1().unwrap_or_default() - 0.6).abs() < 1e-12);
    // Nothing predicted for a labelled entity: precision undefined, F1 zero.
    let none = Counts {
        predicted: 0,
        correct: 0,
        labelled: 3,
        found: 0,
    };
    assert_eq!(none.precision(), None);
    assert_eq!(none.f1(), Some(0.0));
    // Nothing labelled: recall and F1 undefined.
    assert_eq!(Counts::default().f1(), None);
}

#[test]
fn byte_offsets_become_code_points() {
    let text = "Müller: a@b.io";
    let byte = text.find("a@").unwrap_or_default();
    assert_eq!(byte, 9);
    assert_eq!(char_offset(text, byte), 8);
    assert_eq!(char_offset(text, text.len()), text.chars().count());
    assert_eq!(char_offset(text, 0), 0);
}

#[test]
fn parses_the_files_the_scripts_write() {
    let corpus = concat!(
        r#"{"category": "EMAIL_ADDRESS", "spans": [{"end": 12, "entity": "EMAIL_ADDRESS", "start": 5}], "text": "Mail x@y.io now"}"#,
        "\n",
        r#"{"category": "NEG:guid", "spans": [], "text": "Request 0f8c"}"#,
        "\n"
    );
    let records = parse_corpus(corpus).expect("corpus parses");
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].spans, vec![Span::new(5, 12, "EMAIL_ADDRESS")]);
    assert_eq!(records[1].category, "NEG:guid");
    assert!(parse_corpus("{\"spans\": []}").is_err());

    let presidio = parse_presidio(
        r#"{"bytes": 27, "wall_seconds": 0.5, "cpu_seconds": 0.4, "entities": ["EMAIL_ADDRESS"],
            "versions": {"presidio-analyzer": "2.2.366"}, "config": "test",
            "predictions": [[{"start": 5, "end": 12, "entity": "EMAIL_ADDRESS", "score": 1.0}], []]}"#,
    )
    .expect("predictions parse");
    assert_eq!(presidio.predictions.len(), 2);
    assert_eq!(presidio.predictions[0][0].end, 12);
    assert_eq!(presidio.entities, vec!["EMAIL_ADDRESS".to_owned()]);
    assert_eq!(presidio.bytes, 27);
}
