//! The OpenAPI document of the API (served at `/v1/openapi.json`, committed as
//! `docs/openapi.json`). Besides each operation's own answers it lists the refusals every
//! operation of a kind can give ([`CommonResponses`]), so that no status the server sends is left
//! out of the document.

use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};

use super::{cluster, events, jobs, keys, tenants, tiers, usage, workloads};

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Niyanta API", description = "Run tenants' WebAssembly components as sandboxed jobs."),
    paths(
        workloads::put_workload, workloads::list_workloads, workloads::get_workload, workloads::put_input,
        jobs::submit_job, jobs::submit_batch, jobs::list_jobs, jobs::get_job, jobs::get_output, jobs::get_logs, jobs::cancel_job, jobs::redrive_job,
        events::job_events,
        tenants::create_tenant, tenants::list_tenants, tenants::get_tenant, tenants::suspend_tenant,
        tenants::resume_tenant, tenants::set_tier, tenants::whoami,
        keys::create_key, keys::list_keys, keys::revoke_key,
        tiers::list_tiers, tiers::put_tier,
        usage::own_usage, usage::tenant_usage,
        cluster::cluster, cluster::drain_worker,
    ),
    modifiers(&SecurityAddon, &CommonResponses),
    tags((name = "workloads"), (name = "jobs"), (name = "admin"))
)]
pub struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Adds the refusals shared by every operation of a kind, where the operation does not list the
/// status itself (each with an [`super::ErrorBody`]):
/// - operations with a key: 401 (no key, a malformed header, an unknown or revoked key) and 403
///   (a suspended tenant's key, a read-only key asking for a change, the wrong kind of key);
/// - operations with a JSON body: 400 (not JSON), 413 (too large), 415 (not
///   `application/json`) and 422 (JSON that does not fit the schema);
/// - operations with another body: 413;
/// - operations with query parameters: 400 (a parameter that does not parse).
struct CommonResponses;

impl CommonResponses {
    fn add(op: &mut Operation, status: u16, description: &str) {
        let response = ResponseBuilder::new()
            .description(description)
            .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
            .build();
        op.responses.responses.entry(status.to_string()).or_insert(RefOr::T(response));
    }

    fn operation(op: &mut Operation) {
        if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
            Self::add(op, 401, "No key, a malformed `Authorization` header, or an unknown or revoked key");
            Self::add(
                op,
                403,
                "A suspended tenant's key, a read-only key asking for a change, or the wrong kind of key (admin or tenant)",
            );
        }
        let json_body = match &op.request_body {
            Some(RefOr::T(body)) => Some(body.content.contains_key("application/json")),
            Some(RefOr::Ref(_)) => Some(true),
            None => None,
        };
        match json_body {
            Some(true) => {
                Self::add(op, 400, "The body is not JSON");
                Self::add(op, 413, "The body is larger than the server accepts");
                Self::add(op, 415, "The body is not `application/json`");
                Self::add(op, 422, "The JSON does not fit the schema");
            }
            Some(false) => Self::add(op, 413, "The body is larger than the server accepts"),
            None => {}
        }
        let has_query = op.parameters.iter().flatten().any(|p| match p {
            RefOr::T(p) => p.parameter_in == ParameterIn::Query,
            RefOr::Ref(_) => false,
        });
        if has_query {
            Self::add(op, 400, "A query parameter does not parse");
        }
    }
}

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten() {
                Self::operation(op);
            }
        }
    }
}

/// The OpenAPI document as a value.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The OpenAPI document as pretty JSON (what `docs/openapi.json` holds).
pub fn openapi_json() -> String {
    document().to_pretty_json().unwrap_or_default()
}
