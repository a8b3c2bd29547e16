//! Tests for change batches at the API: Route53's limits and error bodies, and the condition
//! keys a batch gives policies.

use super::*;

/// A ChangeResourceRecordSetsRequest of `sets` TXT record sets, each with `values` values of
/// `len` characters (quotes included), all with `action`.
fn batch(action: &str, sets: usize, values: usize, len: usize) -> Vec<u8> {
    let mut changes = String::new();
    for s in 0..sets {
        let records: String = (0..values)
            .map(|v| {
                let tag = format!("{s}-{v}-");
                let fill = "x".repeat(len.saturating_sub(tag.len() + 2));
                format!("<ResourceRecord><Value>\"{tag}{fill}\"</Value></ResourceRecord>")
            })
            .collect();
        changes.push_str(&format!(
            "<Change><Action>{action}</Action><ResourceRecordSet><Name>t{s}.example.com</Name><Type>TXT</Type><TTL>60</TTL><ResourceRecords>{records}</ResourceRecords></ResourceRecordSet></Change>"
        ));
    }
    format!("<ChangeResourceRecordSetsRequest xmlns=\"{NS}\"><ChangeBatch><Changes>{changes}</Changes></ChangeBatch></ChangeResourceRecordSetsRequest>").into_bytes()
}

fn outcome(body: &[u8]) -> Result<usize, (StatusCode, &'static str, String)> {
    let doc = xml::parse(body).expect("xml");
    parse_changes(&doc)
        .map(|c| c.len())
        .map_err(|e| (e.status, e.code, e.message))
}

#[test]
fn batch_limits_count_upserts_twice() {
    let records = Err((
        StatusCode::BAD_REQUEST,
        "InvalidChangeBatch",
        "[Number of records limit of 1000 exceeded.]".to_string(),
    ));
    let chars = Err((
        StatusCode::BAD_REQUEST,
        "InvalidChangeBatch",
        "RDATA character limit of 32000 exceeded.".to_string(),
    ));
    // (action, record sets, values per set, characters per value, outcome)
    let cases = [
        ("CREATE", 10, 100, 10, Ok(10)),
        ("CREATE", 11, 91, 10, records.clone()),
        ("UPSERT", 5, 100, 10, Ok(5)),
        ("UPSERT", 6, 84, 10, records),
        ("DELETE", 10, 100, 10, Ok(10)),
        ("CREATE", 4, 100, 80, Ok(4)),
        ("CREATE", 5, 100, 65, chars.clone()),
        ("UPSERT", 2, 100, 80, Ok(2)),
        ("UPSERT", 3, 100, 55, chars),
    ];
    for (action, sets, values, len, expect) in cases {
        assert_eq!(
            outcome(&batch(action, sets, values, len)),
            expect,
            "{action} {sets}x{values} of {len}"
        );
    }
}

#[tokio::test]
async fn batch_limit_errors_use_route53s_error_document() {
    let doc = xml::parse(&batch("UPSERT", 6, 84, 10)).expect("xml");
    let Err(e) = parse_changes(&doc) else {
        panic!("accepted")
    };
    let response = e.into_response();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .expect("body");
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains(&format!("<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>InvalidChangeBatch</Code><Message>[Number of records limit of 1000 exceeded.]</Message></Error><RequestId>")),
        "{body}"
    );
}

#[test]
fn condition_keys_of_a_batch() {
    let body = format!(
        "<ChangeResourceRecordSetsRequest xmlns=\"{NS}\"><ChangeBatch><Changes>\
         <Change><Action>UPSERT</Action><ResourceRecordSet><Name>_acme-challenge.WWW.example.com.</Name><Type>TXT</Type><TTL>60</TTL><ResourceRecords><ResourceRecord><Value>\"t\"</Value></ResourceRecord></ResourceRecords></ResourceRecordSet></Change>\
         <Change><Action>DELETE</Action><ResourceRecordSet><Name>*.example.com</Name><Type>A</Type><TTL>60</TTL><ResourceRecords><ResourceRecord><Value>192.0.2.1</Value></ResourceRecord></ResourceRecords></ResourceRecordSet></Change>\
         <Change><Action>UPSERT</Action><ResourceRecordSet><Name>www.example.com</Name><Type>A</Type><TTL>60</TTL><ResourceRecords><ResourceRecord><Value>192.0.2.2</Value></ResourceRecord></ResourceRecords></ResourceRecordSet></Change>\
         </Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"
    );
    let changes = parse_changes(&xml::parse(body.as_bytes()).expect("xml")).expect("valid");
    let keys = change_keys(&changes);
    let get = |k: &str| keys.get(k).cloned().unwrap_or_default();
    assert_eq!(
        get("route53:changeresourcerecordsetsactions"),
        ["DELETE", "UPSERT"]
    );
    assert_eq!(
        get("route53:changeresourcerecordsetsrecordtypes"),
        ["A", "TXT"]
    );
    assert_eq!(
        get("route53:changeresourcerecordsetsnormalizedrecordnames"),
        [
            "\\052.example.com",
            "_acme-challenge.www.example.com",
            "www.example.com"
        ]
    );
}
