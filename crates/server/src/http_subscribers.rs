//! The subscriber endpoints of the HTTP server: the form (`GET` and `POST
//! /status/subscribe`), the confirmation link (`GET /status/confirm`), and
//! unsubscribing (`GET /status/unsubscribe` shows a button; `POST` removes,
//! which is also RFC 8058's one-click request). Pages come from
//! `crates/status`; every answer is a page, errors too (400, 404, 429, 503).

#![allow(clippy::result_large_err)]

use crate::config::MailOutSection;
use crate::http::{HttpState, Reply, html};
use crate::mail_out::{self, Envelope};
use crate::subscribers::{new_token, token_hash};
use axum::Extension;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use store::{ErrorKind, Intent, Outcome, SubscribeLimits};

/// How long the confirmation mail may take to hand over while the browser waits.
const CONFIRMATION_SEND_SECONDS_MAX: u64 = 20;
/// How long a confirmation link works, in hours (the store checks it).
const CONFIRM_HOURS: i64 = store::subscribers::CONFIRM_SECONDS_MAX / 3600;

/// What subscribing by email needs: `[mail_out]` and the caps of `[http]`.
pub struct Subscriptions {
    pub mail: MailOutSection,
    pub hostname: String,
    pub limits: SubscribeLimits,
}

fn page(status: StatusCode, body: String) -> Response {
    (status, html(body)).into_response()
}

fn message(state: &HttpState, status: StatusCode, heading: &str, text: &str) -> Response {
    page(
        status,
        status::render_message_page(&state.site, heading, text),
    )
}

fn enabled(state: &HttpState) -> Result<&Subscriptions, Response> {
    state.subscriptions.as_ref().ok_or_else(|| {
        message(
            state,
            StatusCode::NOT_FOUND,
            "No subscriptions",
            "This status page does not send notices by email.",
        )
    })
}

pub async fn form(State(state): State<Arc<HttpState>>) -> Reply {
    enabled(&state)?;
    Ok(page(
        StatusCode::OK,
        status::render_subscribe_page(&state.site, None),
    ))
}

#[derive(Deserialize)]
pub struct SubscribeForm {
    email: String,
}

pub async fn subscribe(
    State(state): State<Arc<HttpState>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Result<Form<SubscribeForm>, FormRejection>,
) -> Response {
    let subscriptions = match enabled(&state) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let again = |status: StatusCode, text: &str| {
        page(
            status,
            status::render_subscribe_page(&state.site, Some(text)),
        )
    };
    let Ok(Form(body)) = body else {
        return again(StatusCode::BAD_REQUEST, "Please give an email address.");
    };
    if body.email.len() > store::EMAIL_BYTES_MAX {
        return again(
            StatusCode::BAD_REQUEST,
            "That address is too long for an email address.",
        );
    }
    let address = match store::normalize_subscriber_address("email", &body.email) {
        Ok(a) => a,
        Err(_) => {
            return again(
                StatusCode::BAD_REQUEST,
                "That does not look like an email address. Please check it.",
            );
        }
    };
    let token = new_token();
    let intent = Intent::StatusSubscribe {
        kind: "email".into(),
        address: address.clone(),
        confirm_hash: Some(token_hash(&token)),
        unsubscribe_token: new_token(),
        // Only a hash of the client's address goes into the journal: enough
        // for the hourly cap, not a log of who subscribed from where.
        ip: peer.map(|Extension(ConnectInfo(a))| token_hash(&a.ip().to_string())),
        limits: subscriptions.limits,
    };
    let check_mail = || {
        message(
            &state,
            StatusCode::OK,
            "Check your mail",
            &format!(
                "If {address} is not subscribed yet, a mail with a link to confirm is on its way. \
                 The link works for {CONFIRM_HOURS} hours."
            ),
        )
    };
    match state.store.submit_one(intent).await {
        Ok(Outcome::Subscriber { .. }) => {}
        // Said like a success: the page must not tell strangers who subscribed.
        Err(e) if e.kind == ErrorKind::AlreadyExists => return check_mail(),
        Err(e) if e.kind == ErrorKind::OverQuota => {
            return again(StatusCode::TOO_MANY_REQUESTS, &e.message);
        }
        Err(e) if e.kind == ErrorKind::Invalid => {
            return again(StatusCode::BAD_REQUEST, &e.message);
        }
        Ok(_) | Err(_) => {
            return message(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again later",
                "The subscription could not be stored just now.",
            );
        }
    }
    // The token lives only in this mail (the store keeps its hash), so the
    // mail is sent now rather than through the outbox: if the relay cannot
    // take it, the visitor is told, and subscribing again sends a new link.
    let message_id = format!("confirm.{}@{}", new_token(), subscriptions.hostname);
    let mail = status::render_confirmation_mail(
        &state.site,
        &status::MailHeaders {
            from: &subscriptions.mail.from,
            to: &address,
            date: store::writer::now_seconds(),
            message_id: &message_id,
        },
        &token,
        CONFIRM_HOURS,
    );
    let envelope = Envelope {
        helo: &subscriptions.hostname,
        from: &subscriptions.mail.from,
        to: &address,
        message: &mail,
    };
    let deadline = Duration::from_secs(
        subscriptions
            .mail
            .timeout_secs
            .min(CONFIRMATION_SEND_SECONDS_MAX),
    );
    match mail_out::send(&subscriptions.mail.relay, &envelope, deadline).await {
        Ok(()) => {
            tracing::info!(event = "subscription_confirmation_sent");
            check_mail()
        }
        Err(e) => {
            tracing::warn!(event = "subscription_confirmation_failed", error = %e);
            message(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again later",
                "The confirmation mail could not be sent just now. Please subscribe again in a few minutes.",
            )
        }
    }
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

fn token_of(
    state: &HttpState,
    query: Result<Query<TokenQuery>, impl Sized>,
) -> Result<String, Response> {
    match query {
        Ok(Query(TokenQuery { token: Some(t) })) if !t.is_empty() && t.len() <= 128 => Ok(t),
        _ => Err(message(
            state,
            StatusCode::BAD_REQUEST,
            "Incomplete link",
            "This link is incomplete. Please open the whole link from the mail.",
        )),
    }
}

pub async fn confirm(
    State(state): State<Arc<HttpState>>,
    query: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply {
    enabled(&state)?;
    let token = token_of(&state, query)?;
    Ok(
        match state
            .store
            .submit_one(Intent::ConfirmSubscriber {
                confirm_hash: token_hash(&token),
            })
            .await
        {
            Ok(_) => message(
                &state,
                StatusCode::OK,
                "You are subscribed",
                "You will get a mail when an incident is posted or updated. Every mail has a link to unsubscribe.",
            ),
            Err(e) if e.kind == ErrorKind::NotFound => message(
                &state,
                StatusCode::NOT_FOUND,
                "Unknown link",
                "This confirmation link is unknown, used already, or expired. Please subscribe again.",
            ),
            Err(_) => message(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again later",
                "The confirmation could not be stored just now.",
            ),
        },
    )
}

fn unknown_unsubscribe(state: &HttpState) -> Response {
    message(
        state,
        StatusCode::NOT_FOUND,
        "Unknown link",
        "This unsubscribe link is unknown: the address is not subscribed (any more).",
    )
}

pub async fn unsubscribe_page(
    State(state): State<Arc<HttpState>>,
    query: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply {
    let token = token_of(&state, query)?;
    let store = state.store.clone();
    let lookup = token.clone();
    Ok(
        match tokio::task::spawn_blocking(move || store.subscriber_by_unsubscribe_token(&lookup))
            .await
        {
            Ok(Ok(Some(subscriber))) => page(
                StatusCode::OK,
                status::render_unsubscribe_page(&state.site, &token, &subscriber.address),
            ),
            Ok(Ok(None)) => unknown_unsubscribe(&state),
            _ => message(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again later",
                "The subscription could not be read just now.",
            ),
        },
    )
}

/// RFC 8058 one-click (the body says `List-Unsubscribe=One-Click`) and the
/// button of the page above; the body is not needed either way.
pub async fn unsubscribe(
    State(state): State<Arc<HttpState>>,
    query: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply {
    let token = token_of(&state, query)?;
    Ok(
        match state
            .store
            .submit_one(Intent::RemoveSubscriber {
                id: None,
                unsubscribe_token: Some(token),
            })
            .await
        {
            Ok(_) => {
                tracing::info!(event = "unsubscribed");
                message(
                    &state,
                    StatusCode::OK,
                    "Unsubscribed",
                    "You will get no more notices from this status page.",
                )
            }
            Err(e) if e.kind == ErrorKind::NotFound => unknown_unsubscribe(&state),
            Err(_) => message(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again later",
                "The change could not be stored just now.",
            ),
        },
    )
}
