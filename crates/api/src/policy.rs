//! IAM policy documents and their evaluation: explicit Deny beats Allow, Allow beats the
//! implicit deny. Actions and resources match with `*` and `?` wildcards; conditions support
//! the string operators with the `ForAllValues:` and `ForAnyValue:` set qualifiers over the
//! Route53 condition keys.
//!
//! Evaluation is a pure function of the policies and a [`RequestContext`].

use std::collections::BTreeMap;

use serde_json::Value;

/// Why a policy document was refused (IAM's `MalformedPolicyDocument`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedPolicy(pub String);

/// A parsed policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub effect: Effect,
    /// Patterns of `Action` (or of `NotAction` when `not_action`).
    pub actions: Vec<String>,
    pub not_action: bool,
    pub resources: Vec<String>,
    pub not_resource: bool,
    pub conditions: Vec<Condition>,
}

/// How a condition combines the request's values of a key with the policy's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetQualifier {
    /// Single-valued (or any value, for a multi-valued key).
    None,
    ForAllValues,
    ForAnyValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringLike,
    StringNotLike,
}

/// One condition: operator, qualifier, key, allowed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub qualifier: SetQualifier,
    pub operator: Operator,
    pub key: String,
    pub values: Vec<String>,
}

/// What a request asks: the action, the resource, and the values of the condition keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub action: String,
    pub resource: String,
    /// Condition keys (lowercase) and their values.
    pub keys: BTreeMap<String, Vec<String>>,
}

/// The decision for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    ExplicitDeny,
    ImplicitDeny,
}

/// Largest policy document IAM accepts for an inline user policy.
pub const MAX_POLICY_SIZE: usize = 2048;

impl Policy {
    /// Parses a JSON policy document.
    pub fn parse(text: &str) -> Result<Policy, MalformedPolicy> {
        let bad = |m: &str| MalformedPolicy(m.to_string());
        let doc: Value = serde_json::from_str(text)
            .map_err(|e| MalformedPolicy(format!("Syntax errors in policy: {e}")))?;
        let obj = doc
            .as_object()
            .ok_or_else(|| bad("Policy document must be a JSON object"))?;
        if let Some(v) = obj.get("Version") {
            if v != "2012-10-17" && v != "2008-10-17" {
                return Err(bad("The policy must contain a valid version string"));
            }
        }
        let statements = match obj.get("Statement") {
            Some(Value::Array(a)) => a.clone(),
            Some(o @ Value::Object(_)) => vec![o.clone()],
            _ => return Err(bad("Policy document must contain a Statement")),
        };
        let mut out = Vec::new();
        for s in statements {
            let s = s
                .as_object()
                .ok_or_else(|| bad("Statement must be an object"))?;
            let effect = match s.get("Effect").and_then(Value::as_str) {
                Some("Allow") => Effect::Allow,
                Some("Deny") => Effect::Deny,
                _ => return Err(bad("Statement must have Effect Allow or Deny")),
            };
            let (actions, not_action) = match (s.get("Action"), s.get("NotAction")) {
                (Some(a), None) => (
                    strings(a)
                        .ok_or_else(|| bad("Action must be a string or a list of strings"))?,
                    false,
                ),
                (None, Some(a)) => (
                    strings(a)
                        .ok_or_else(|| bad("NotAction must be a string or a list of strings"))?,
                    true,
                ),
                _ => {
                    return Err(bad(
                        "Statement must have exactly one of Action and NotAction",
                    ))
                }
            };
            let (resources, not_resource) = match (s.get("Resource"), s.get("NotResource")) {
                (Some(r), None) => (
                    strings(r)
                        .ok_or_else(|| bad("Resource must be a string or a list of strings"))?,
                    false,
                ),
                (None, Some(r)) => (
                    strings(r)
                        .ok_or_else(|| bad("NotResource must be a string or a list of strings"))?,
                    true,
                ),
                _ => return Err(bad("Policy statement must contain resources.")),
            };
            let mut conditions = Vec::new();
            if let Some(c) = s.get("Condition") {
                let c = c
                    .as_object()
                    .ok_or_else(|| bad("Condition must be an object"))?;
                for (op_text, block) in c {
                    let (qualifier, op_name) = match op_text.split_once(':') {
                        Some(("ForAllValues", rest)) => (SetQualifier::ForAllValues, rest),
                        Some(("ForAnyValue", rest)) => (SetQualifier::ForAnyValue, rest),
                        Some(_) => {
                            return Err(MalformedPolicy(format!(
                                "unsupported condition qualifier in {op_text}"
                            )))
                        }
                        None => (SetQualifier::None, op_text.as_str()),
                    };
                    let operator = match op_name {
                        "StringEquals" => Operator::StringEquals,
                        "StringNotEquals" => Operator::StringNotEquals,
                        "StringEqualsIgnoreCase" => Operator::StringEqualsIgnoreCase,
                        "StringLike" => Operator::StringLike,
                        "StringNotLike" => Operator::StringNotLike,
                        other => {
                            return Err(MalformedPolicy(format!(
                                "unsupported condition operator {other}"
                            )))
                        }
                    };
                    let block = block
                        .as_object()
                        .ok_or_else(|| bad("Condition block must be an object"))?;
                    for (key, values) in block {
                        conditions.push(Condition {
                            qualifier,
                            operator,
                            key: key.to_ascii_lowercase(),
                            values: strings(values)
                                .ok_or_else(|| bad("Condition values must be strings"))?,
                        });
                    }
                }
            }
            out.push(Statement {
                effect,
                actions,
                not_action,
                resources,
                not_resource,
                conditions,
            });
        }
        Ok(Policy { statements: out })
    }
}

fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
        Value::Bool(b) => Some(vec![b.to_string()]),
        _ => None,
    }
}

/// Evaluates every statement of every policy for `ctx`.
pub fn evaluate(policies: &[Policy], ctx: &RequestContext) -> Decision {
    let mut allowed = false;
    for s in policies.iter().flat_map(|p| &p.statements) {
        if !statement_applies(s, ctx) {
            continue;
        }
        match s.effect {
            Effect::Deny => return Decision::ExplicitDeny,
            Effect::Allow => allowed = true,
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

fn statement_applies(s: &Statement, ctx: &RequestContext) -> bool {
    let action = s
        .actions
        .iter()
        .any(|p| glob(&p.to_ascii_lowercase(), &ctx.action.to_ascii_lowercase()));
    let resource = s.resources.iter().any(|p| glob(p, &ctx.resource));
    action != s.not_action
        && resource != s.not_resource
        && s.conditions.iter().all(|c| condition_holds(c, ctx))
}

fn condition_holds(c: &Condition, ctx: &RequestContext) -> bool {
    let matches_one = |v: &str| {
        c.values.iter().any(|p| match c.operator {
            Operator::StringEquals | Operator::StringNotEquals => p == v,
            Operator::StringEqualsIgnoreCase => p.eq_ignore_ascii_case(v),
            Operator::StringLike | Operator::StringNotLike => glob(p, v),
        })
    };
    let negated = matches!(
        c.operator,
        Operator::StringNotEquals | Operator::StringNotLike
    );
    let test = |v: &str| matches_one(v) != negated;
    let values = ctx.keys.get(&c.key);
    match (c.qualifier, values) {
        // ForAllValues over no values is true (IAM's documented behaviour).
        (SetQualifier::ForAllValues, None) => true,
        (SetQualifier::ForAllValues, Some(vs)) => vs.iter().all(|v| test(v)),
        (_, None) => negated,
        (SetQualifier::ForAnyValue | SetQualifier::None, Some(vs)) => vs.iter().any(|v| test(v)),
    }
}

/// `*` matches any run of characters, `?` exactly one.
pub fn glob(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scoped policy edgeplane gives a zone's ACME identity.
    const ACME: &str = r#"{
      "Version": "2012-10-17",
      "Statement": [
        {"Effect": "Allow", "Action": ["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets"],
         "Resource": "arn:aws:route53:::hostedzone/ZONE1",
         "Condition": {
           "ForAllValues:StringLike": {"route53:ChangeResourceRecordSetsNormalizedRecordNames": ["_acme-challenge.*"]},
           "ForAllValues:StringEquals": {"route53:ChangeResourceRecordSetsRecordTypes": ["TXT"]}}},
        {"Effect": "Allow", "Action": "route53:GetChange", "Resource": "arn:aws:route53:::change/*"},
        {"Effect": "Allow", "Action": "route53:ListHostedZonesByName", "Resource": "*"}
      ]}"#;

    fn ctx(action: &str, resource: &str, names: &[&str], types: &[&str]) -> RequestContext {
        let mut keys = BTreeMap::new();
        if !names.is_empty() {
            keys.insert(
                "route53:changeresourcerecordsetsnormalizedrecordnames".into(),
                names.iter().map(|s| s.to_string()).collect(),
            );
            keys.insert(
                "route53:changeresourcerecordsetsrecordtypes".into(),
                types.iter().map(|s| s.to_string()).collect(),
            );
        }
        RequestContext {
            action: action.into(),
            resource: resource.into(),
            keys,
        }
    }

    #[test]
    fn scoped_acme_policy() {
        let p = [Policy::parse(ACME).expect("valid")];
        let check =
            |c: RequestContext, expect: Decision| assert_eq!(evaluate(&p, &c), expect, "{c:?}");
        let zone = "arn:aws:route53:::hostedzone/ZONE1";
        check(
            ctx(
                "route53:ChangeResourceRecordSets",
                zone,
                &["_acme-challenge.www.example.com"],
                &["TXT"],
            ),
            Decision::Allow,
        );
        check(
            ctx(
                "route53:ChangeResourceRecordSets",
                zone,
                &["www.example.com"],
                &["A"],
            ),
            Decision::ImplicitDeny,
        );
        check(
            ctx(
                "route53:ChangeResourceRecordSets",
                zone,
                &["_acme-challenge.example.com", "www.example.com"],
                &["TXT"],
            ),
            Decision::ImplicitDeny,
        );
        check(
            ctx(
                "route53:ChangeResourceRecordSets",
                zone,
                &["_acme-challenge.example.com"],
                &["TXT", "A"],
            ),
            Decision::ImplicitDeny,
        );
        check(
            ctx(
                "route53:ChangeResourceRecordSets",
                "arn:aws:route53:::hostedzone/OTHER",
                &["_acme-challenge.x"],
                &["TXT"],
            ),
            Decision::ImplicitDeny,
        );
        check(
            ctx(
                "route53:GetChange",
                "arn:aws:route53:::change/C123",
                &[],
                &[],
            ),
            Decision::Allow,
        );
        check(
            ctx("route53:ListHostedZonesByName", "*", &[], &[]),
            Decision::Allow,
        );
        check(
            ctx("route53:DeleteHostedZone", zone, &[], &[]),
            Decision::ImplicitDeny,
        );
        check(
            ctx("route53:CreateHostedZone", "*", &[], &[]),
            Decision::ImplicitDeny,
        );
    }

    #[test]
    fn deny_beats_allow_and_wildcards() {
        let p = [
            Policy::parse(
                r#"{"Statement":[{"Effect":"Allow","Action":"route53:*","Resource":"*"}]}"#,
            )
            .expect("valid"),
            Policy::parse(
                r#"{"Statement":{"Effect":"Deny","Action":"route53:Delete*","Resource":"*"}}"#,
            )
            .expect("valid"),
        ];
        assert_eq!(
            evaluate(&p, &ctx("route53:ListHostedZones", "*", &[], &[])),
            Decision::Allow
        );
        assert_eq!(
            evaluate(
                &p,
                &ctx(
                    "route53:DeleteHostedZone",
                    "arn:aws:route53:::hostedzone/Z",
                    &[],
                    &[]
                )
            ),
            Decision::ExplicitDeny
        );
        let not = [Policy::parse(
            r#"{"Statement":[{"Effect":"Allow","NotAction":"route53:Delete*","Resource":"*"}]}"#,
        )
        .expect("valid")];
        assert_eq!(
            evaluate(&not, &ctx("route53:GetChange", "x", &[], &[])),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&not, &ctx("route53:DeleteHostedZone", "x", &[], &[])),
            Decision::ImplicitDeny
        );
        assert_eq!(
            evaluate(&[], &ctx("route53:GetChange", "x", &[], &[])),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn change_actions_condition_key() {
        // Records may be created and upserted but never deleted.
        let p = [Policy::parse(
            r#"{"Version": "2012-10-17", "Statement": [
              {"Effect": "Allow", "Action": "route53:ChangeResourceRecordSets", "Resource": "*",
               "Condition": {"ForAllValues:StringEquals": {"route53:ChangeResourceRecordSetsActions": ["CREATE", "UPSERT"]}}},
              {"Effect": "Deny", "Action": "route53:ChangeResourceRecordSets", "Resource": "*",
               "Condition": {"ForAnyValue:StringLike": {"route53:ChangeResourceRecordSetsActions": "DEL*"}}}]}"#,
        )
        .expect("valid")];
        let with_actions = |actions: &[&str]| {
            let mut c = ctx(
                "route53:ChangeResourceRecordSets",
                "arn:aws:route53:::hostedzone/Z",
                &["www.example.com"],
                &["A"],
            );
            c.keys.insert(
                "route53:changeresourcerecordsetsactions".into(),
                actions.iter().map(|a| a.to_string()).collect(),
            );
            evaluate(&p, &c)
        };
        let cases: &[(&[&str], Decision)] = &[
            (&["UPSERT"], Decision::Allow),
            (&["CREATE", "UPSERT"], Decision::Allow),
            (&["DELETE"], Decision::ExplicitDeny),
            (&["CREATE", "DELETE"], Decision::ExplicitDeny),
        ];
        for (actions, expect) in cases {
            assert_eq!(with_actions(actions), *expect, "{actions:?}");
        }
        // Values are case-sensitive under StringEquals.
        let lower = [Policy::parse(
            r#"{"Statement": {"Effect": "Allow", "Action": "route53:*", "Resource": "*",
               "Condition": {"ForAllValues:StringEquals": {"route53:ChangeResourceRecordSetsActions": "upsert"}}}}"#,
        )
        .expect("valid")];
        let mut c = ctx("route53:ChangeResourceRecordSets", "*", &[], &[]);
        c.keys.insert(
            "route53:changeresourcerecordsetsactions".into(),
            vec!["UPSERT".into()],
        );
        assert_eq!(evaluate(&lower, &c), Decision::ImplicitDeny);
    }

    #[test]
    fn malformed_documents() {
        for bad in [
            "not json",
            "[]",
            r#"{"Statement":[]}"#.replace("[]", "1").as_str(),
            r#"{"Statement":[{"Effect":"Maybe","Action":"a","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Action":"a"}]}"#,
            r#"{"Version":"2030-01-01","Statement":[{"Effect":"Allow","Action":"a","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Action":"a","Resource":"*","Condition":{"NumericLessThan":{"k":"1"}}}]}"#,
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob("_acme-challenge.*", "_acme-challenge.a.b"));
        assert!(!glob("_acme-challenge.*", "x._acme-challenge.a"));
        assert!(glob("a?c", "abc"));
        assert!(glob("*", ""));
        assert!(glob("route53:list*", "route53:listhostedzones"));
        assert!(!glob("abc", "abcd"));
    }
}
