//! Fuzzes the master-file parser: any text either parses into valid record sets, whose export
//! parses again, or yields an error with a line number.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let origin = model::DomainName::parse("example.com").expect("origin");
    if let Ok(sets) = model::zonefile::parse(text, &origin) {
        for set in &sets {
            set.check().expect("parsed sets are valid");
            for value in &set.records {
                let printed = value.to_string();
                let again = model::RecordData::parse(set.rtype, &printed, None)
                    .unwrap_or_else(|e| panic!("{printed:?} does not parse back: {e}"));
                assert_eq!(&again, value, "{printed}");
            }
        }
    }
});
