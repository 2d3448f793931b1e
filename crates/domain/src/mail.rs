//! The messages the account flows send: rendered from the templates in `templates/email/`
//! (a subject, a plain-text and an HTML body per purpose), with a link to the tenant's host.
//!
//! Placeholders are `{{name}}`; values are HTML-escaped in the HTML body. The link carries its
//! token in the fragment (`#token=…`), which browsers never send to a server, so the token
//! stays out of the front end's access logs and `Referer` headers.

use std::time::Duration;

use crate::ports::{OutboundEmail, PendingEmail};
use crate::values::{EmailToken, Purpose};

/// One purpose's templates.
struct Templates {
    subject: &'static str,
    text: &'static str,
    html: &'static str,
    /// The front end's page the link opens, under the tenant's public URL.
    page: &'static str,
}

const fn templates(purpose: Purpose) -> Templates {
    match purpose {
        Purpose::Invitation => Templates {
            subject: include_str!("../templates/email/invitation.subject.txt"),
            text: include_str!("../templates/email/invitation.txt"),
            html: include_str!("../templates/email/invitation.html"),
            page: "/invitations/accept",
        },
        Purpose::PasswordReset => Templates {
            subject: include_str!("../templates/email/password_reset.subject.txt"),
            text: include_str!("../templates/email/password_reset.txt"),
            html: include_str!("../templates/email/password_reset.html"),
            page: "/password-reset",
        },
        Purpose::VerifyEmail => Templates {
            subject: include_str!("../templates/email/verify_email.subject.txt"),
            text: include_str!("../templates/email/verify_email.txt"),
            html: include_str!("../templates/email/verify_email.html"),
            page: "/verify-email",
        },
        Purpose::WebhookDisabled => Templates {
            subject: include_str!("../templates/email/webhook_disabled.subject.txt"),
            text: include_str!("../templates/email/webhook_disabled.txt"),
            html: include_str!("../templates/email/webhook_disabled.html"),
            page: "/settings/webhooks/",
        },
    }
}

/// Where links point and how messages are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailSettings {
    /// The tenant's public URL, with `{slug}` where its slug goes (`https://{slug}.example.com`).
    pub public_url: String,
    /// The domain of every `Message-ID` (`<id@domain>`): the sender's.
    pub message_id_domain: String,
}

impl MailSettings {
    /// The public URL of the tenant with slug `slug`, without a trailing slash.
    pub fn tenant_url(&self, slug: &str) -> String {
        self.public_url.replace("{slug}", slug).trim_end_matches('/').to_owned()
    }

    /// The message for `email`, carrying `token` (which lives for `ttl`) when its purpose has
    /// one.
    pub fn render(&self, email: &PendingEmail, token: Option<&EmailToken>, ttl: Duration) -> OutboundEmail {
        let t = templates(email.purpose);
        let base = format!("{}{}", self.tenant_url(email.tenant.slug.as_str()), t.page);
        let link = match (token, &email.webhook) {
            (Some(token), _) => format!("{base}#token={}", token.expose()),
            (None, Some(notice)) => format!("{base}{}", notice.id),
            (None, None) => base,
        };
        let (role, inviter) = match &email.invitation {
            Some((role, inviter)) => (role.as_str(), inviter.as_str()),
            None => ("", ""),
        };
        let (webhook, reason) = match &email.webhook {
            Some(notice) => (notice.origin.as_str(), notice.reason.as_str()),
            None => ("", ""),
        };
        let expires = human_duration(ttl);
        let values = [
            ("tenant", email.tenant.name.as_str()),
            ("role", role),
            ("inviter", inviter),
            ("link", link.as_str()),
            ("expires", expires.as_str()),
            ("webhook", webhook),
            ("reason", reason),
        ];
        OutboundEmail {
            message_id: format!("{}@{}", email.id, self.message_id_domain),
            to: email.to.as_str().to_owned(),
            subject: fill(t.subject.trim(), &values, false).replace(['\r', '\n'], " "),
            text: fill(t.text, &values, false),
            html: fill(t.html, &values, true),
            link,
        }
    }
}

/// `template` with each `{{name}}` replaced by its value (escaped for HTML when `html`).
fn fill(template: &str, values: &[(&str, &str)], html: bool) -> String {
    let mut out = String::with_capacity(template.len() + 128);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        match values.iter().find(|(n, _)| *n == name) {
            Some((_, v)) if html => escape_html(v, &mut out),
            Some((_, v)) => out.push_str(v),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fn escape_html(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `7 days`, `30 minutes`, `1 hour`: the largest whole unit.
pub(crate) fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = if s >= 86_400 && s.is_multiple_of(86_400) {
        (s / 86_400, "day")
    } else if s >= 3600 && s.is_multiple_of(3600) {
        (s / 3600, "hour")
    } else if s >= 60 {
        (s / 60, "minute")
    } else {
        (s, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::entities::Tenant;
    use crate::ids::{EmailId, TenantId};
    use crate::values::{Email, EmailKey, Plan, Role, Slug, TenantName};

    fn pending(purpose: Purpose, tenant_name: &str) -> Option<PendingEmail> {
        Some(PendingEmail {
            id: EmailId::new(),
            tenant: Tenant {
                id: TenantId::new(),
                slug: Slug::parse("acme").ok()?,
                name: TenantName::parse(tenant_name).ok()?,
                plan: Plan::free(),
                lifecycle: crate::entities::Lifecycle::default(),
            },
            purpose,
            to: Email::parse("ada@example.com").ok()?,
            created_at: OffsetDateTime::UNIX_EPOCH,
            attempts: 0,
            invitation: Some((Role::Admin, Email::parse("bob@example.com").ok()?)),
            webhook: None,
            live: true,
        })
    }

    #[test]
    fn a_message_links_to_its_tenant_with_its_token_in_the_fragment() {
        let settings =
            MailSettings { public_url: "https://{slug}.example.com/".into(), message_id_domain: "example.com".into() };
        let Some(email) = pending(Purpose::Invitation, "Acme <Labs> & Co") else { panic!("fixture") };
        let token = EmailToken::derive(&EmailKey::derive(b"k"), Purpose::Invitation, email.id);
        let out = settings.render(&email, Some(&token), Duration::from_secs(7 * 86_400));
        let link = format!("https://acme.example.com/invitations/accept#token={}", token.expose());
        assert_eq!(out.link, link);
        assert!(out.text.contains(&link) && out.html.contains(&link));
        assert_eq!(out.message_id, format!("{}@example.com", email.id));
        assert_eq!(out.subject, "You're invited to join Acme <Labs> & Co");
        assert!(out.text.contains("bob@example.com invited you to join Acme <Labs> & Co as admin"));
        assert!(out.html.contains("Acme &lt;Labs&gt; &amp; Co"), "{}", out.html);
        assert!(out.text.contains("expires in 7 days"));
        assert!(!out.text.contains("{{") && !out.html.contains("{{"));
    }

    #[test]
    fn every_purpose_renders_every_placeholder() {
        let settings = MailSettings { public_url: "http://{slug}.localhost".into(), message_id_domain: "x".into() };
        for purpose in [Purpose::Invitation, Purpose::PasswordReset, Purpose::VerifyEmail] {
            let Some(email) = pending(purpose, "Acme") else { panic!("fixture") };
            let token = EmailToken::derive(&EmailKey::derive(b"k"), purpose, email.id);
            let out = settings.render(&email, Some(&token), Duration::from_secs(1800));
            for part in [&out.subject, &out.text, &out.html] {
                assert!(!part.contains("{{"), "{purpose:?}: {part}");
            }
            assert!(out.text.contains(&token.expose()) && out.text.contains("30 minutes"));
        }
    }

    #[test]
    fn a_webhooks_notice_names_its_origin_and_reason_and_carries_no_token() {
        let settings = MailSettings { public_url: "https://{slug}.example.com".into(), message_id_domain: "x".into() };
        let Some(mut email) = pending(Purpose::WebhookDisabled, "Acme") else { panic!("fixture") };
        let id = crate::ids::WebhookId::new();
        let reason = "every attempt failed for 5 days (12 attempts in a row)".to_owned();
        email.webhook = Some(crate::ports::WebhookNotice { id, origin: "https://hooks.example.com".into(), reason });
        let out = settings.render(&email, None, Duration::from_secs(86_400));
        assert_eq!(out.link, format!("https://acme.example.com/settings/webhooks/{id}"));
        assert_eq!(out.subject, "A webhook of Acme was disabled");
        for part in [&out.text, &out.html] {
            assert!(part.contains("https://hooks.example.com") && part.contains("12 attempts in a row"), "{part}");
            assert!(!part.contains("{{") && !part.contains("token"), "{part}");
        }
    }

    #[test]
    fn durations_read_in_their_largest_whole_unit() {
        assert_eq!(human_duration(Duration::from_secs(7 * 86_400)), "7 days");
        assert_eq!(human_duration(Duration::from_secs(3600)), "1 hour");
        assert_eq!(human_duration(Duration::from_secs(1800)), "30 minutes");
        assert_eq!(human_duration(Duration::from_secs(90)), "1 minute");
        assert_eq!(human_duration(Duration::from_secs(5)), "5 seconds");
    }
}
