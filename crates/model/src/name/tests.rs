//! Tests for `DomainName`.

use super::*;

fn n(s: &str) -> DomainName {
    DomainName::parse(s).expect("valid name in test")
}

#[test]
fn parse_and_display() {
    let check = |input: &str, expect: &str| assert_eq!(n(input).to_string(), expect, "{input}");
    check("Example.COM", "example.com.");
    check("example.com.", "example.com.");
    check(".", ".");
    check("\\042.example.com", "*.example.com.");
    check("a\\.b.example", "a\\.b.example.");
    check(
        "_acme-challenge.Www.example.org",
        "_acme-challenge.www.example.org.",
    );
    check("\\065bc.d", "abc.d.");
}

#[test]
fn rejects_invalid_names() {
    let bad = |input: &str| assert!(DomainName::parse(input).is_err(), "{input:?} accepted");
    bad("");
    bad("a..b");
    bad(".a");
    bad("a b.c");
    bad("ex\u{e9}mple.com");
    bad("\\256.com");
    bad("a\\");
    bad(&format!("{}.com", "a".repeat(64)));
    let long = vec!["abcdefghi"; 26].join(".");
    bad(&long);
    assert!(DomainName::parse(&vec!["abcdefghi"; 25].join(".")).is_ok());
}

#[test]
fn case_insensitive_equality_and_wire() {
    assert_eq!(n("WWW.Example.Com"), n("www.example.com."));
    assert_eq!(n("ab.c").wire(), &[2, b'a', b'b', 1, b'c', 0]);
    assert_eq!(
        DomainName::from_wire(&[2, b'A', b'B', 0]).expect("valid"),
        n("ab")
    );
    assert!(DomainName::from_wire(&[3, b'a', 0]).is_err());
    assert!(DomainName::from_wire(&[1, b'a', 0, 0]).is_err());
}

#[test]
fn hierarchy() {
    let zone = n("example.com");
    assert!(n("a.b.example.com").is_subdomain_of(&zone));
    assert!(zone.is_subdomain_of(&zone));
    assert!(!n("badexample.com").is_subdomain_of(&zone));
    assert!(n("x.com").is_subdomain_of(&DomainName::root()));
    assert_eq!(n("a.example.com").parent(), Some(zone.clone()));
    assert_eq!(DomainName::root().parent(), None);
    assert!(n("*.example.com").is_wildcard());
    assert_eq!(zone.wildcard_child(), Some(n("*.example.com")));
    assert_eq!(n("a.b.example.com").label_count(), 4);
}

#[test]
fn relative_forms() {
    let origin = n("example.com");
    let rel = |s: &str| DomainName::parse_relative(s, &origin).expect("valid");
    assert_eq!(rel("@"), origin);
    assert_eq!(rel("www"), n("www.example.com"));
    assert_eq!(rel("other.org."), n("other.org"));
    assert_eq!(n("www.example.com").to_relative_string(&origin), "www");
    assert_eq!(origin.to_relative_string(&origin), "@");
    assert_eq!(n("other.org").to_relative_string(&origin), "other.org.");
    assert!(is_absolute("a.b."));
    assert!(!is_absolute("a.b\\."));
}

#[test]
fn route53_form_escapes_wildcards() {
    assert_eq!(n("*.Example.com").to_route53_string(), "\\052.example.com.");
    assert_eq!(n("_x.example.com").to_route53_string(), "_x.example.com.");
    let parsed = DomainName::parse_route53("\\052.Example.com").expect("valid");
    assert_eq!(parsed, n("*.example.com"));
    assert_eq!(
        DomainName::parse_route53("a\\.b.c")
            .expect("valid")
            .label_count(),
        2
    );
    assert!(DomainName::parse_route53("\\400x.com").is_err());
    assert!(DomainName::parse_route53("\\377x.com").is_ok());
    assert!(DomainName::parse_route53("\\9").is_err());
    assert!(DomainName::parse_route53("\\é.example.").is_err());
    assert!(DomainName::parse_route53("a\\").is_err());
}

#[test]
fn route53_sort_key_reverses_labels_and_compares_strings() {
    assert_eq!(n("www.example.com").route53_sort_key(), "com.example.www.");
    assert_eq!(n("*.example.com").route53_sort_key(), "com.example.\\052.");
    assert_eq!(DomainName::root().route53_sort_key(), ".");
    // A string comparison, where '-' sorts before the label separator.
    let mut names = ["b.a.com", "a.com", "a-b.com", "example.net"].map(n);
    names.sort_by_key(DomainName::route53_sort_key);
    assert_eq!(names, ["a-b.com", "a.com", "b.a.com", "example.net"].map(n));
}

#[test]
fn canonical_order() {
    let mut names = [
        n("z.example"),
        n("example"),
        n("*.z.example"),
        n("a.example"),
        n("yljkjljk.a.example"),
        n("\\200.z.example"),
        n("Z.a.example"),
    ];
    names.sort();
    let got: Vec<String> = names.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "example.",
            "a.example.",
            "yljkjljk.a.example.",
            "z.a.example.",
            "z.example.",
            "*.z.example.",
            "\\200.z.example."
        ]
    );
}
