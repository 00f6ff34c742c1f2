//! Asking the origin: one request, its answer within [`REQUEST_TIMEOUT`], taken only if it
//! names this very request.

use super::REQUEST_TIMEOUT;
use crate::BridgeError;

/// Asks the origin and takes its answer only if the answer names this very request (its
/// fields and nonce, [`crate::wire::Echo`]): an answer to anything else, which another
/// account could have sent to this mirror's reply subject, is refused.
pub(super) async fn request<
    R: serde::Serialize,
    T: serde::de::DeserializeOwned + crate::wire::Echo,
>(
    client: &async_nats::Client,
    subject: String,
    req: &R,
) -> Result<T, BridgeError> {
    let asked = serde_json::to_value(req).map_err(BridgeError::Payload)?;
    let body = serde_json::to_vec(&asked).map_err(BridgeError::Payload)?;
    let answer: T = request_raw(client, subject, body).await?;
    if answer.answers() != Some(&asked) {
        return Err(BridgeError::Misdirected);
    }
    Ok(answer)
}

pub(super) async fn request_raw<T: serde::de::DeserializeOwned>(
    client: &async_nats::Client,
    subject: String,
    body: Vec<u8>,
) -> Result<T, BridgeError> {
    let reply = tokio::time::timeout(REQUEST_TIMEOUT, client.request(subject, body.into()))
        .await
        .map_err(|_| BridgeError::RequestTimedOut)?
        .map_err(BridgeError::Request)?;
    serde_json::from_slice(&reply.payload).map_err(BridgeError::Payload)
}
