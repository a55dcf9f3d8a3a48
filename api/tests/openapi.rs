//! `/openapi.json`: OpenAPI 3.1, generated from the code, covering every route the node
//! serves, with problem+json for errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spec_is_openapi_3_1_and_covers_every_route() {
    let node = support::boot().await;
    let (status, spec, _) = node.call("GET", "/openapi.json", &[], None).await;
    assert_eq!(status.as_u16(), 200);
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        spec["openapi"]
    );
    let paths = spec["paths"].as_object().unwrap();
    let expected = [
        ("/healthz", "get"),
        ("/v1/log", "get"),
        ("/v1/state", "get"),
        ("/v1/entries", "post"),
        ("/v1/entries/{index}", "get"),
        ("/v1/services", "get"),
        ("/v1/proofs/inclusion", "get"),
        ("/v1/proofs/consistency", "get"),
        ("/checkpoint", "get"),
        ("/v1/checkpoints", "get"),
        ("/tile/{path}", "get"),
        ("/v1/tenants", "post"),
        ("/v1/auth/register/start", "post"),
        ("/v1/auth/register/finish", "post"),
        ("/v1/auth/login/start", "post"),
        ("/v1/auth/login/finish", "post"),
        ("/v1/auth/action/init", "post"),
        ("/v1/auth/action", "post"),
        ("/v1/me", "get"),
        ("/v1/requests", "get"),
        ("/v1/requests/{id}", "get"),
        ("/v1/wallets/{id}", "get"),
        ("/", "get"),
        ("/ui/{file}", "get"),
        ("/v1/leaves/{leaf}", "get"),
        ("/v1/credentials/{id}", "get"),
        ("/v1/users", "post"),
        ("/v1/users/role", "post"),
        ("/v1/credentials", "post"),
        ("/v1/credentials/revoke", "post"),
        ("/v1/wallets", "post"),
        ("/v1/wallets/{id}/transfers", "post"),
        ("/v1/policies", "post"),
        ("/v1/requests/{id}/approvals/{decision}", "post"),
        ("/v1/tenants/{tenant}/payloads/{scope}", "get"),
        ("/v1/tenants/{tenant}/keys", "get"),
        ("/v1/tenants/{tenant}/keys/rotate", "post"),
        ("/v1/tenants/{tenant}/keys/shred", "post"),
        ("/v1/keys/release", "post"),
    ];
    for (path, method) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is not in the spec"
        );
    }
    assert_eq!(
        paths
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum::<usize>(),
        expected.len(),
        "the spec has operations the test does not know"
    );
    // Every route the spec names answers something other than the router's own 404.
    for (path, method) in expected {
        let concrete = path
            .replace("{index}", "0")
            .replace("{id}", "x")
            .replace("{tenant}", "x")
            .replace("{scope}", "wallets")
            .replace("{decision}", "approve")
            .replace("{path}", "0/000")
            .replace("{file}", "app.js")
            .replace("{leaf}", &"0".repeat(64));
        let (_, body, _) = node
            .call(&method.to_uppercase(), &concrete, &[], None)
            .await;
        assert!(
            !body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("nothing is served at")),
            "{method} {path} is in the spec but not routed"
        );
    }
    // Sensitive endpoints name the userAction scheme; errors are problem+json.
    let transfer = &paths["/v1/wallets/{id}/transfers"]["post"];
    assert_eq!(transfer["security"][0]["userAction"], Value::Array(vec![]));
    assert!(transfer["responses"]["403"]["content"]["application/problem+json"].is_object());
    assert_eq!(
        spec["components"]["securitySchemes"]["userAction"]["name"],
        "X-Govern-User-Action"
    );
}
