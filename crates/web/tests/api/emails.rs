//! Invitations, password resets and address verification, end to end through a real SMTP
//! server (aiosmtpd on loopback, started by the test): each message is read back from the
//! server's mailbox and its link followed. The worker is driven one job at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use plinth_domain::clock::ManualClock;
use plinth_domain::entities::{Invitation, User};
use plinth_domain::ids::{EmailId, InvitationId, TenantId, UserId};
use plinth_domain::ports::{
    Acceptance, AccountEmails, Clock, EmailOutcome, Job, NewEmail, NewVerification, PendingEmail,
};
use plinth_domain::values::{Email, PasswordHash, TokenHash};
use plinth_testkit::{Mailbox, ReceivedMail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp, assert_problem};
use crate::on_every_backend;

const NEW_PASSWORD: &str = "a brand new passphrase";

/// A plinth sending through `mailbox`, on a clock the test moves.
async fn mail_app(backend: Backend, mailbox: &Mailbox, vars: &[(&str, &str)]) -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let url = mailbox.url();
    let mut all = vec![
        ("PLINTH_SMTP_URL", url.as_str()),
        ("PLINTH_EMAIL_FROM", "plinth <no-reply@plinth.test>"),
        ("PLINTH_PUBLIC_URL_TEMPLATE", "http://{slug}.example.test"),
        ("PLINTH_WEBHOOK_BACKOFF_MS", "1"),
    ];
    all.extend_from_slice(vars);
    let app = TestApp::spawn_on_clock(backend, &all, clock.clone() as Arc<dyn Clock>).await;
    (app, clock)
}

fn mailbox() -> Mailbox {
    Mailbox::start().unwrap_or_else(|e| panic!("{e}"))
}

/// Works every due job; returns how many.
async fn work(app: &TestApp) -> usize {
    let mut n = 0;
    while app.plinth.work_one("test").await.expect("a job works") {
        n += 1;
    }
    n
}

/// The messages to `to`, oldest first.
fn to(mailbox: &Mailbox, to: &str) -> Vec<ReceivedMail> {
    mailbox.messages().unwrap_or_else(|e| panic!("{e}")).into_iter().filter(|m| m.to.contains(to)).collect()
}

/// The one message to `address`.
fn only_message(mailbox: &Mailbox, address: &str) -> ReceivedMail {
    let mut found = to(mailbox, address);
    assert_eq!(found.len(), 1, "messages to {address}: {:?}", found.iter().map(|m| &m.subject).collect::<Vec<_>>());
    found.remove(0)
}

/// The link in a message (the same in both bodies) and the token in its fragment.
fn link_and_token(mail: &ReceivedMail, page: &str) -> (String, String) {
    let start = mail.text.find("http://").unwrap_or_else(|| panic!("no link in {}", mail.text));
    let link: String = mail.text[start..].chars().take_while(|c| !c.is_whitespace()).collect();
    assert!(mail.html.contains(&link), "the HTML body has the same link");
    let (before, token) = link.split_once("#token=").unwrap_or_else(|| panic!("no token in {link}"));
    assert!(before.ends_with(page), "{link}");
    assert_eq!(token.len(), 47, "{token}");
    (link.clone(), token.to_owned())
}

async fn post(app: &TestApp, slug: &str, path: &str, token: Option<&str>, body: Value) -> reqwest::Response {
    app.on(Method::POST, slug, path, token).json(&body).send().await.unwrap()
}

async fn invite(app: &TestApp, slug: &str, token: &str, email: &str, role: &str) -> reqwest::Response {
    post(app, slug, "/v1/invitations", Some(token), json!({"email": email, "role": role})).await
}

async fn accept(app: &TestApp, slug: &str, token: &str) -> reqwest::Response {
    post(app, slug, "/v1/invitations/accept", None, json!({"token": token, "password": PASSWORD})).await
}

async fn me(app: &TestApp, slug: &str, token: &str) -> Value {
    let res = app.on(Method::GET, slug, "/v1/me", Some(token)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// The one answer to any bad emailed token.
async fn bad_token(res: reqwest::Response) -> Value {
    assert_problem(res, 400, "invalid_email_token").await
}

on_every_backend! {
    async fn an_invitation_is_emailed_and_its_link_makes_a_verified_member_who_is_signed_in(backend: Backend) {
        let mb = mailbox();
        let (app, _) = mail_app(backend, &mb, &[]).await;
        let owner = app.signup("inv").await;
        let res = invite(&app, "inv", &owner.token, "Grace@Example.TEST", "admin").await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let invitation: Value = res.json().await.unwrap();
        assert_eq!(invitation["email"], "grace@example.test");
        assert_eq!(invitation["role"], "admin");
        assert!(invitation.get("token").is_none() && invitation.get("token_hash").is_none(), "{invitation}");
        // Nothing is sent until the worker runs: the message is a job of the write.
        assert!(to(&mb, "grace@example.test").is_empty());
        assert!(work(&app).await >= 1);

        let mail = only_message(&mb, "grace@example.test");
        assert_eq!(mail.subject, "You're invited to join Tenant inv");
        assert!(mail.text.contains("owner@inv.test invited you to join Tenant inv as admin"), "{}", mail.text);
        assert!(mail.message_id.ends_with("@plinth.test"), "{}", mail.message_id);
        let (link, token) = link_and_token(&mail, "/invitations/accept");
        assert!(link.starts_with("http://inv.example.test/invitations/accept#token=pli_"), "{link}");

        let listed = app.all("inv", &owner.token, "/v1/invitations").await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["id"], invitation["id"]);

        let res = accept(&app, "inv", &token).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers().get("cache-control").unwrap(), "no-store");
        let signed_in: Value = res.json().await.unwrap();
        let access = signed_in["access_token"].as_str().unwrap();
        assert!(signed_in["refresh_token"].as_str().unwrap().starts_with("plr_"));
        let who = me(&app, "inv", access).await;
        assert_eq!(who["user"]["email"], "grace@example.test");
        assert_eq!(who["user"]["role"], "admin");
        assert_eq!(who["user"]["email_verified"], true);
        // The new member signs in with the password they chose.
        app.login("inv", "grace@example.test").await;
        // The acceptance stored two events: the member, as the API shows users, and the
        // invitation (never its token).
        let events = app.all("inv", &owner.token, "/v1/events?type=invitation.accepted").await;
        assert_eq!(events.len(), 1, "{events:?}");
        let accepted = &events[0]["data"];
        assert_eq!(accepted["id"], invitation["id"]);
        assert_eq!((&accepted["email"], &accepted["role"]), (&invitation["email"], &invitation["role"]));
        assert_eq!((&accepted["invited_by"], &accepted["user_id"]), (&json!(owner.user_id), &who["user"]["id"]));
        assert_eq!(accepted["created_at"], invitation["created_at"]);
        assert_eq!(accepted["accepted_at"], events[0]["created_at"]);
        assert!(!events[0].to_string().contains("token") && !events[0].to_string().contains(&token[4..]), "{}", events[0]);
        let created = app.all("inv", &owner.token, "/v1/events?type=user.created").await;
        let member = created.iter().find(|e| e["data"]["id"] == who["user"]["id"]).expect("the member's user.created");
        assert_eq!(member["data"], who["user"]);
        assert_eq!(member["created_at"], events[0]["created_at"], "one write, one time");

        // Used: the same link again is refused, and the invitation is no longer pending.
        bad_token(accept(&app, "inv", &token).await).await;
        assert!(app.all("inv", &owner.token, "/v1/invitations").await.is_empty());
        // Inviting a member answers 409.
        let res = invite(&app, "inv", &owner.token, "grace@example.test", "member").await;
        assert_problem(res, 409, "conflict").await;
    }

    async fn revoked_expired_foreign_and_misused_invitation_tokens_all_get_one_answer(backend: Backend) {
        let mb = mailbox();
        let (app, clock) = mail_app(backend, &mb, &[("PLINTH_INVITATION_TTL_S", "3600")]).await;
        let owner = app.signup("tok").await;
        app.signup("tok-other").await;
        for who in ["revoked@x.test", "expired@x.test", "foreign@x.test"] {
            assert_eq!(invite(&app, "tok", &owner.token, who, "member").await.status(), StatusCode::CREATED);
        }
        work(&app).await;
        let token_of = |address: &str| link_and_token(&only_message(&mb, address), "/invitations/accept").1;

        // Revoked: the link stops working.
        let listed = app.all("tok", &owner.token, "/v1/invitations").await;
        let revoked = listed.iter().find(|i| i["email"] == "revoked@x.test").unwrap();
        let path = format!("/v1/invitations/{}", revoked["id"].as_str().unwrap());
        let res = app.on(Method::DELETE, "tok", &path, Some(&owner.token)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        let res = app.on(Method::DELETE, "tok", &path, Some(&owner.token)).send().await.unwrap();
        assert_problem(res, 404, "not_found").await;
        let revoked_body = bad_token(accept(&app, "tok", &token_of("revoked@x.test")).await).await;

        // Another tenant's host does not know the token; nor does another purpose's route.
        let foreign = token_of("foreign@x.test");
        let foreign_body = bad_token(accept(&app, "tok-other", &foreign).await).await;
        let res = post(&app, "tok", "/v1/auth/password-reset/confirm", None,
            json!({"token": foreign, "new_password": NEW_PASSWORD})).await;
        bad_token(res).await;
        let res = post(&app, "tok", "/v1/auth/verify-email", None, json!({"token": foreign})).await;
        bad_token(res).await;
        // Malformed.
        let malformed = bad_token(accept(&app, "tok", "pli_not-a-token").await).await;

        // Expired: an hour and a second later.
        clock.advance(Duration::from_secs(3601));
        let expired_body = bad_token(accept(&app, "tok", &token_of("expired@x.test")).await).await;
        // The foreign one, used on its own host, expired too by now.
        bad_token(accept(&app, "tok", &foreign).await).await;
        // The answers do not say which case it was.
        for body in [&foreign_body, &malformed, &expired_body] {
            assert_eq!(body, &revoked_body);
        }
        // Nobody joined.
        let fresh = app.login("tok", "owner@tok.test").await;
        assert_eq!(app.all("tok", &fresh, "/v1/users").await.len(), 1);
    }

    async fn nobody_invites_above_their_own_role(backend: Backend) {
        let mb = mailbox();
        let (app, _) = mail_app(backend, &mb, &[]).await;
        let owner = app.signup("roles").await;
        let (_, admin) = app.user("roles", &owner.token, "admin@roles.test", "admin").await;
        let (_, member) = app.user("roles", &owner.token, "member@roles.test", "member").await;
        assert_problem(invite(&app, "roles", &admin, "x@roles.test", "owner").await, 403, "forbidden").await;
        assert_problem(invite(&app, "roles", &member, "x@roles.test", "member").await, 403, "forbidden").await;
        let res = app.on(Method::GET, "roles", "/v1/invitations", Some(&member)).send().await.unwrap();
        assert_problem(res, 403, "forbidden").await;
        assert_eq!(invite(&app, "roles", &admin, "x@roles.test", "admin").await.status(), StatusCode::CREATED);
        assert_eq!(invite(&app, "roles", &owner.token, "y@roles.test", "owner").await.status(), StatusCode::CREATED);
        let res = invite(&app, "roles", &owner.token, "not an address", "member").await;
        assert_problem(res, 422, "validation_failed").await;
        // An address a mail system would read as another (a display name around the real one).
        let res = invite(&app, "roles", &owner.token, "trusted<victim@x.test>", "member").await;
        assert_problem(res, 422, "validation_failed").await;
        // An admin can neither replace an owner's invitation nor revoke it.
        let res = invite(&app, "roles", &admin, "y@roles.test", "member").await;
        assert_problem(res, 403, "forbidden").await;
        let listed = app.all("roles", &owner.token, "/v1/invitations").await;
        let to_owner = listed.iter().find(|i| i["email"] == "y@roles.test").unwrap();
        let path = format!("/v1/invitations/{}", to_owner["id"].as_str().unwrap());
        let res = app.on(Method::DELETE, "roles", &path, Some(&admin)).send().await.unwrap();
        assert_problem(res, 403, "forbidden").await;
        assert_eq!(app.on(Method::DELETE, "roles", &path, Some(&owner.token)).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    }

    async fn a_reset_link_sets_the_password_once_and_ends_every_session(backend: Backend) {
        let mb = mailbox();
        let (app, clock) = mail_app(backend, &mb, &[]).await;
        let owner = app.signup("reset").await;
        let (other_access, other_refresh) = app.sign_in("reset", "owner@reset.test").await;

        let known = post(&app, "reset", "/v1/auth/password-reset", None, json!({"email": "owner@reset.test"})).await;
        let unknown = post(&app, "reset", "/v1/auth/password-reset", None, json!({"email": "nobody@reset.test"})).await;
        assert_eq!(known.status(), StatusCode::ACCEPTED);
        assert_eq!(unknown.status(), StatusCode::ACCEPTED);
        let (known, unknown): (Value, Value) = (known.json().await.unwrap(), unknown.json().await.unwrap());
        assert_eq!(known, unknown, "the same answer whoever the address belongs to");
        work(&app).await;
        assert!(to(&mb, "nobody@reset.test").is_empty(), "no message to an address nobody has");
        let mails: Vec<_> = to(&mb, "owner@reset.test").into_iter().filter(|m| m.subject.starts_with("Reset")).collect();
        assert_eq!(mails.len(), 1);
        let (link, token) = link_and_token(&mails[0], "/password-reset");
        assert!(link.contains("#token=plp_"), "{link}");

        // A weak password is refused and spends nothing.
        let res = post(&app, "reset", "/v1/auth/password-reset/confirm", None,
            json!({"token": token, "new_password": "short"})).await;
        assert_problem(res, 422, "validation_failed").await;
        let res = post(&app, "reset", "/v1/auth/password-reset/confirm", None,
            json!({"token": token, "new_password": NEW_PASSWORD})).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        // Every session ended: access tokens and refresh tokens alike.
        for access in [&owner.token, &other_access] {
            let res = app.on(Method::GET, "reset", "/v1/me", Some(access)).send().await.unwrap();
            assert_problem(res, 401, "invalid_token").await;
        }
        for refresh in [&owner.refresh, &other_refresh] {
            let res = post(&app, "reset", "/v1/auth/refresh", None, json!({"refresh_token": refresh})).await;
            assert_problem(res, 401, "invalid_token").await;
        }
        // The old password no longer works; the new one does, and the address is verified.
        let res = post(&app, "reset", "/v1/auth/login", None, json!({"email": "owner@reset.test", "password": PASSWORD})).await;
        assert_problem(res, 401, "invalid_credentials").await;
        let res = post(&app, "reset", "/v1/auth/login", None,
            json!({"email": "owner@reset.test", "password": NEW_PASSWORD})).await;
        assert_eq!(res.status(), StatusCode::OK);
        let access: Value = res.json().await.unwrap();
        assert_eq!(me(&app, "reset", access["access_token"].as_str().unwrap()).await["user"]["email_verified"], true);
        // Single use.
        let res = post(&app, "reset", "/v1/auth/password-reset/confirm", None,
            json!({"token": token, "new_password": "yet another passphrase"})).await;
        bad_token(res).await;

        // A second link, left for 31 minutes: expired.
        post(&app, "reset", "/v1/auth/password-reset", None, json!({"email": "owner@reset.test"})).await;
        work(&app).await;
        let mails: Vec<_> = to(&mb, "owner@reset.test").into_iter().filter(|m| m.subject.starts_with("Reset")).collect();
        let (_, late) = link_and_token(&mails[1], "/password-reset");
        clock.advance(Duration::from_secs(31 * 60));
        let res = post(&app, "reset", "/v1/auth/password-reset/confirm", None,
            json!({"token": late, "new_password": "yet another passphrase"})).await;
        bad_token(res).await;
    }

    async fn signup_sends_a_verification_link_and_unverified_writes_can_be_refused(backend: Backend) {
        let mb = mailbox();
        let (app, _) = mail_app(backend, &mb, &[("PLINTH_REQUIRE_VERIFIED_EMAIL", "true")]).await;
        let owner = app.signup("verify").await;
        assert_eq!(me(&app, "verify", &owner.token).await["user"]["email_verified"], false);
        // Reads work; writes wait for the address.
        assert_eq!(app.on(Method::GET, "verify", "/v1/projects", Some(&owner.token)).send().await.unwrap().status(), StatusCode::OK);
        let res = post(&app, "verify", "/v1/projects", Some(&owner.token), json!({"name": "p"})).await;
        assert_problem(res, 403, "email_unverified").await;

        work(&app).await;
        let mail = only_message(&mb, "owner@verify.test");
        assert_eq!(mail.subject, "Confirm your email address for Tenant verify");
        let (_, token) = link_and_token(&mail, "/verify-email");
        let res = post(&app, "verify", "/v1/auth/verify-email", None, json!({"token": token})).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(me(&app, "verify", &owner.token).await["user"]["email_verified"], true);
        let res = post(&app, "verify", "/v1/projects", Some(&owner.token), json!({"name": "p"})).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        bad_token(post(&app, "verify", "/v1/auth/verify-email", None, json!({"token": token})).await).await;
        // The verification stored `user.updated`, with the user as they are now.
        let updated = app.all("verify", &owner.token, "/v1/events?type=user.updated").await;
        assert_eq!(updated.len(), 1, "{updated:?}");
        assert_eq!(updated[0]["data"], me(&app, "verify", &owner.token).await["user"]);

        // A user an admin created asks for a link of their own; a verified one gets none.
        let (_, member) = app.user("verify", &owner.token, "m@verify.test", "member").await;
        let res = post(&app, "verify", "/v1/me/verify-email", Some(&member), json!({})).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let res = post(&app, "verify", "/v1/me/verify-email", Some(&owner.token), json!({})).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        work(&app).await;
        let (_, token) = link_and_token(&only_message(&mb, "m@verify.test"), "/verify-email");
        assert_eq!(only_message(&mb, "owner@verify.test").subject, mail.subject, "no second link for the owner");
        let res = post(&app, "verify", "/v1/auth/verify-email", None, json!({"token": token})).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }

    async fn a_message_waits_out_an_smtp_outage_and_no_request_fails(backend: Backend) {
        let mut mb = mailbox();
        let (app, clock) = mail_app(backend, &mb, &[]).await;
        let owner = app.signup("outage").await;
        work(&app).await;
        mb.stop();
        let res = invite(&app, "outage", &owner.token, "late@outage.test", "member").await;
        assert_eq!(res.status(), StatusCode::CREATED, "the request does not wait for SMTP");
        // The attempt fails and is scheduled again, the job kept.
        assert!(app.plinth.work_one("test").await.unwrap());
        assert!(to(&mb, "late@outage.test").is_empty());
        assert_eq!(app.plinth.queue_stats().await.unwrap().ready, 1);
        mb.start_again().unwrap_or_else(|e| panic!("{e}"));
        clock.advance(Duration::from_secs(1)); // past the 1 ms backoff
        assert_eq!(work(&app).await, 1);
        let (_, token) = link_and_token(&only_message(&mb, "late@outage.test"), "/invitations/accept");
        assert_eq!(accept(&app, "outage", &token).await.status(), StatusCode::OK);
        assert_eq!(app.plinth.queue_stats().await.unwrap().ready, 0);
    }

    async fn a_worker_dying_between_sending_and_recording_resends_the_same_message(backend: Backend) {
        let mb = mailbox();
        let fail_once = Arc::new(AtomicBool::new(false));
        let flag = fail_once.clone();
        let clock = Arc::new(ManualClock::new());
        let url = mb.url();
        let vars = [
            ("PLINTH_SMTP_URL", url.as_str()),
            ("PLINTH_PUBLIC_URL_TEMPLATE", "http://{slug}.example.test"),
        ];
        let app = TestApp::spawn_adapted_on_clock(backend, &vars, clock.clone() as Arc<dyn Clock>, move |ports| {
            ports.accounts = Arc::new(DiesBeforeRecording { inner: ports.accounts.clone(), armed: flag });
        })
        .await;
        let owner = app.signup("crash").await;
        work(&app).await;
        fail_once.store(true, Ordering::SeqCst);
        invite(&app, "crash", &owner.token, "twice@crash.test", "member").await;
        // Sent, then the worker "dies": the job stays claimed, nothing recorded.
        app.plinth.work_one("test").await.unwrap_err();
        assert_eq!(to(&mb, "twice@crash.test").len(), 1);
        // Its claim is rescued (the worker stopped answering a second ago) and the job runs again.
        clock.advance(Duration::from_secs(1));
        assert_eq!(app.plinth.rescue_jobs(Duration::ZERO).await.unwrap(), 1);
        assert_eq!(work(&app).await, 1);
        let copies = to(&mb, "twice@crash.test");
        assert_eq!(copies.len(), 2, "at least once: the message went out again");
        // The same message: one Message-ID (what a mailbox dedupes by) and the same working link.
        assert_eq!(copies[0].message_id, copies[1].message_id);
        assert_eq!(copies[0].text, copies[1].text);
        let distinct: std::collections::HashSet<_> = copies.iter().map(|m| m.message_id.clone()).collect();
        assert_eq!(distinct.len(), 1);
        let (_, token) = link_and_token(&copies[1], "/invitations/accept");
        assert_eq!(accept(&app, "crash", &token).await.status(), StatusCode::OK);
        // Recorded as sent: nothing left to do.
        assert_eq!(work(&app).await, 0);
    }

    async fn a_mailbox_can_not_be_flooded(backend: Backend) {
        let mb = mailbox();
        let (app, _) = mail_app(backend, &mb, &[("PLINTH_MAILBOX_QUOTA", "2")]).await;
        // The signup's verification link is the owner's first message of the minute.
        app.signup("flood").await;
        let ask = |email: &'static str| post(&app, "flood", "/v1/auth/password-reset", None, json!({"email": email}));
        assert_eq!(ask("OWNER@flood.test").await.status(), StatusCode::ACCEPTED);
        let res = ask("owner@flood.test").await;
        assert!(res.headers().get("retry-after").is_some());
        assert_problem(res, 429, "rate_limited").await;
        // An address nobody has is limited alike (the limit says nothing of who exists).
        assert_eq!(ask("ghost@flood.test").await.status(), StatusCode::ACCEPTED);
        assert_eq!(ask("ghost@flood.test").await.status(), StatusCode::ACCEPTED);
        let limited = ask("ghost@flood.test").await;
        assert!(limited.headers().get("ratelimit").is_none(), "no other policy's RateLimit on a mailbox's 429");
        assert_problem(limited, 429, "rate_limited").await;
        // Signup's verification link is a message too: one address can't be signed up to be
        // mailed by tenant after tenant.
        for (n, expected) in [(1, StatusCode::CREATED), (2, StatusCode::CREATED), (3, StatusCode::TOO_MANY_REQUESTS)] {
            let res = app
                .request(Method::POST, "localhost", "/v1/signup")
                .json(&json!({"tenant_slug": format!("spam-{n}"), "tenant_name": "Spam", "email": "target@victim.test", "password": PASSWORD}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), expected, "signup {n}");
        }
        work(&app).await;
        assert_eq!(to(&mb, "target@victim.test").len(), 2);
        let resets = to(&mb, "owner@flood.test").into_iter().filter(|m| m.subject.starts_with("Reset")).count();
        assert_eq!(resets, 1);
    }
}

/// Passes every call through, but fails the first `record_email` while armed (after the
/// message went out): a worker that died between sending and recording.
struct DiesBeforeRecording {
    inner: Arc<dyn AccountEmails>,
    armed: Arc<AtomicBool>,
}

#[async_trait]
impl AccountEmails for DiesBeforeRecording {
    async fn invite(
        &self,
        i: &Invitation,
        t: &TokenHash,
        e: &NewEmail,
        max: usize,
        a: &plinth_domain::audit::AuditTrail,
    ) -> plinth_domain::Result<()> {
        self.inner.invite(i, t, e, max, a).await
    }
    async fn invitations(&self, t: TenantId, now: time::OffsetDateTime) -> plinth_domain::Result<Vec<Invitation>> {
        self.inner.invitations(t, now).await
    }
    async fn revoke_invitation(
        &self,
        t: TenantId,
        id: InvitationId,
        a: &plinth_domain::audit::AuditTrail,
    ) -> plinth_domain::Result<bool> {
        self.inner.revoke_invitation(t, id, a).await
    }
    async fn accept_invitation(
        &self,
        t: TenantId,
        h: &TokenHash,
        m: &Acceptance,
        a: &plinth_domain::audit::AuditTrail,
        cap: Option<plinth_domain::plans::Cap>,
    ) -> plinth_domain::Result<Option<User>> {
        self.inner.accept_invitation(t, h, m, a, cap).await
    }
    async fn request_reset(&self, e: &NewEmail) -> plinth_domain::Result<()> {
        self.inner.request_reset(e).await
    }
    async fn reset_password(
        &self,
        t: TenantId,
        h: &TokenHash,
        p: &PasswordHash,
        now: time::OffsetDateTime,
        a: &plinth_domain::audit::AuditTrail,
    ) -> plinth_domain::Result<Option<UserId>> {
        self.inner.reset_password(t, h, p, now, a).await
    }
    async fn queue_verification(&self, v: &NewVerification) -> plinth_domain::Result<()> {
        self.inner.queue_verification(v).await
    }
    async fn verify_email(
        &self,
        t: TenantId,
        h: &TokenHash,
        now: time::OffsetDateTime,
        a: &plinth_domain::audit::AuditTrail,
    ) -> plinth_domain::Result<Option<UserId>> {
        self.inner.verify_email(t, h, now, a).await
    }
    async fn load_email(&self, t: TenantId, id: EmailId) -> plinth_domain::Result<Option<PendingEmail>> {
        self.inner.load_email(t, id).await
    }
    async fn issue_reset(
        &self,
        t: TenantId,
        e: EmailId,
        to: &Email,
        h: &TokenHash,
        at: time::OffsetDateTime,
    ) -> plinth_domain::Result<bool> {
        self.inner.issue_reset(t, e, to, h, at).await
    }
    async fn record_email(&self, job: &Job, id: EmailId, outcome: &EmailOutcome) -> plinth_domain::Result<()> {
        if self.armed.swap(false, Ordering::SeqCst) {
            return Err(plinth_domain::Error::internal("the worker died before recording"));
        }
        self.inner.record_email(job, id, outcome).await
    }
    async fn prune(&self, now: time::OffsetDateTime, before: time::OffsetDateTime) -> plinth_domain::Result<u64> {
        self.inner.prune(now, before).await
    }
}
