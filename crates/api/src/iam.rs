//! The IAM Query API (2010-05-08), the subset a per-zone identity needs: users, inline user
//! policies and access keys, with IAM's XML responses and error codes. Served at `POST /` of the
//! AWS-compatible listener (form-encoded `Action=...`), as the SDKs send it.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use store::identities::{IamError, IamUser, Identities, Identity};

use crate::policy::{Policy, MAX_POLICY_SIZE};
use crate::route53::xml::escape;

const NS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";
/// The account every ARN names.
pub const ACCOUNT_ID: &str = "000000000000";

/// An IAM error response.
#[derive(Debug)]
pub struct IamApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IamApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        IamApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for IamApiError {
    fn into_response(self) -> Response {
        let body = format!(
            "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
            self.code,
            escape(&self.message),
            crate::route53::request_id()
        );
        (self.status, [("content-type", "text/xml")], body).into_response()
    }
}

impl From<IamError> for IamApiError {
    fn from(e: IamError) -> Self {
        let (status, code) = match &e {
            IamError::EntityAlreadyExists(_) => (409, "EntityAlreadyExists"),
            IamError::NoSuchEntity(_) => (404, "NoSuchEntity"),
            IamError::DeleteConflict(_) => (409, "DeleteConflict"),
            IamError::LimitExceeded => (409, "LimitExceeded"),
            IamError::Validation(_) => (400, "ValidationError"),
            IamError::Store(inner) => {
                tracing::error!(error = %inner, "IAM request failed");
                (500, "ServiceFailure")
            }
        };
        IamApiError::new(status, code, e.to_string())
    }
}

/// Parses an `application/x-www-form-urlencoded` body.
pub fn parse_form(body: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (model::net::form_decode(k), model::net::form_decode(v))
        })
        .collect()
}

/// The resource ARN of an IAM user.
pub fn user_arn(user: &IamUser) -> String {
    format!("arn:aws:iam::{ACCOUNT_ID}:user{}{}", user.path, user.name)
}

fn user_xml(u: &IamUser) -> String {
    format!(
        "<User><Path>{}</Path><UserName>{}</UserName><UserId>{}</UserId><Arn>{}</Arn><CreateDate>{}</CreateDate></User>",
        escape(&u.path),
        escape(&u.name),
        u.user_id,
        escape(&user_arn(u)),
        crate::route53::timestamp(u.created_at)
    )
}

fn key_meta_xml(k: &Identity) -> String {
    format!(
        "<member><UserName>{}</UserName><AccessKeyId>{}</AccessKeyId><Status>{}</Status><CreateDate>{}</CreateDate></member>",
        escape(k.user.as_deref().unwrap_or(&k.name)),
        k.access_key_id,
        if k.active { "Active" } else { "Inactive" },
        crate::route53::timestamp(k.created_at)
    )
}

fn ok(action: &str, result: &str) -> Response {
    let body = format!(
        "<{action}Response xmlns=\"{NS}\">{}<ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
        if result.is_empty() { String::new() } else { format!("<{action}Result>{result}</{action}Result>") },
        crate::route53::request_id()
    );
    (StatusCode::OK, [("content-type", "text/xml")], body).into_response()
}

fn param<'a>(form: &'a BTreeMap<String, String>, name: &str) -> Result<&'a str, IamApiError> {
    form.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| IamApiError::new(400, "ValidationError", format!("1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null")))
}

/// The IAM action a form names, for authorization (`iam:CreateUser`, ...).
pub fn action_of(form: &BTreeMap<String, String>) -> Option<&str> {
    form.get("Action").map(String::as_str)
}

/// Executes one IAM action (blocking: call from a blocking task).
pub fn execute(ids: &Identities, form: &BTreeMap<String, String>) -> Result<Response, IamApiError> {
    let action = action_of(form)
        .ok_or_else(|| IamApiError::new(400, "MissingAction", "Action is required"))?;
    match action {
        "CreateUser" => {
            let u = ids.create_user(
                param(form, "UserName")?,
                form.get("Path").map_or("/", String::as_str),
            )?;
            Ok(ok(action, &user_xml(&u)))
        }
        "GetUser" => {
            let u = ids.require_user(param(form, "UserName")?)?;
            Ok(ok(action, &user_xml(&u)))
        }
        "ListUsers" => {
            let users: String = ids
                .users()
                .map_err(IamError::from)?
                .iter()
                .map(|u| {
                    user_xml(u)
                        .replace("<User>", "<member>")
                        .replace("</User>", "</member>")
                })
                .collect();
            Ok(ok(
                action,
                &format!("<Users>{users}</Users><IsTruncated>false</IsTruncated>"),
            ))
        }
        "DeleteUser" => {
            ids.delete_user(param(form, "UserName")?)?;
            Ok(ok(action, ""))
        }
        "PutUserPolicy" => {
            let user = param(form, "UserName")?;
            let name = param(form, "PolicyName")?;
            let doc = param(form, "PolicyDocument")?;
            if doc.len() > MAX_POLICY_SIZE {
                return Err(IamApiError::new(
                    409,
                    "LimitExceeded",
                    format!(
                        "Maximum policy size of {MAX_POLICY_SIZE} bytes exceeded for user {user}"
                    ),
                ));
            }
            Policy::parse(doc)
                .map_err(|e| IamApiError::new(400, "MalformedPolicyDocument", e.to_string()))?;
            ids.put_user_policy(user, name, doc)?;
            Ok(ok(action, ""))
        }
        "GetUserPolicy" => {
            let user = param(form, "UserName")?;
            let name = param(form, "PolicyName")?;
            let u = ids.require_user(user)?;
            let doc = u.policies.get(name).ok_or_else(|| {
                IamApiError::new(
                    404,
                    "NoSuchEntity",
                    format!("The user policy with name {name} cannot be found."),
                )
            })?;
            // IAM returns the document URL-encoded.
            let encoded: String = doc
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            Ok(ok(action, &format!("<UserName>{}</UserName><PolicyName>{}</PolicyName><PolicyDocument>{}</PolicyDocument>", escape(user), escape(name), encoded)))
        }
        "ListUserPolicies" => {
            let u = ids.require_user(param(form, "UserName")?)?;
            let names: String = u
                .policies
                .keys()
                .map(|n| format!("<member>{}</member>", escape(n)))
                .collect();
            Ok(ok(
                action,
                &format!("<PolicyNames>{names}</PolicyNames><IsTruncated>false</IsTruncated>"),
            ))
        }
        "DeleteUserPolicy" => {
            ids.delete_user_policy(param(form, "UserName")?, param(form, "PolicyName")?)?;
            Ok(ok(action, ""))
        }
        "CreateAccessKey" => {
            let user = param(form, "UserName")?;
            let (identity, creds) = ids.create_access_key(user)?;
            Ok(ok(
                action,
                &format!(
                    "<AccessKey><UserName>{}</UserName><AccessKeyId>{}</AccessKeyId><Status>Active</Status><SecretAccessKey>{}</SecretAccessKey><CreateDate>{}</CreateDate></AccessKey>",
                    escape(user),
                    identity.access_key_id,
                    escape(creds.secret_access_key.as_str()),
                    crate::route53::timestamp(identity.created_at)
                ),
            ))
        }
        "ListAccessKeys" => {
            let user = param(form, "UserName")?;
            ids.require_user(user)?;
            let keys: String = ids
                .user_keys(user)
                .map_err(IamError::from)?
                .iter()
                .map(key_meta_xml)
                .collect();
            Ok(ok(action, &format!("<UserName>{}</UserName><AccessKeyMetadata>{keys}</AccessKeyMetadata><IsTruncated>false</IsTruncated>", escape(user))))
        }
        "UpdateAccessKey" => {
            let user = param(form, "UserName")?;
            let key = param(form, "AccessKeyId")?;
            let active = match param(form, "Status")? {
                "Active" => true,
                "Inactive" => false,
                other => {
                    return Err(IamApiError::new(
                        400,
                        "ValidationError",
                        format!("Status {other:?} must be Active or Inactive"),
                    ))
                }
            };
            ids.user_key(user, key)?;
            ids.set_active(key, active).map_err(IamError::from)?;
            Ok(ok(action, ""))
        }
        "DeleteAccessKey" => {
            let user = param(form, "UserName")?;
            let key = param(form, "AccessKeyId")?;
            ids.user_key(user, key)?;
            ids.delete(key).map_err(IamError::from)?;
            Ok(ok(action, ""))
        }
        other => Err(IamApiError::new(
            400,
            "InvalidAction",
            format!("Could not find operation {other} for version 2010-05-08"),
        )),
    }
}
