//! Bytes of request bodies the server holds in memory before it can act on them (an ECR body
//! until its signature is checked, a manifest until it is whole): a budget for all requests
//! together and a share of it per client address, so a client that stalls many such bodies
//! (HTTP/2 allows 100 streams per connection) cannot take the server's memory or everyone's
//! room. Past either, the request is refused and the client retries (each plane says so in its
//! own words: `ThrottlingException`, 429 `TOOMANYREQUESTS`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes held per client address.
type ByAddress = Arc<Mutex<HashMap<IpAddr, usize>>>;

#[derive(Clone)]
pub struct BodyBudget {
    /// One permit per byte.
    total: Arc<Semaphore>,
    by_address: ByAddress,
    address_share: usize,
}

/// What one request holds of a [`BodyBudget`], given back when dropped.
#[derive(Debug, Default)]
pub struct Held {
    permit: Option<OwnedSemaphorePermit>,
    /// The address charged, and with how many bytes.
    address: Option<(ByAddress, IpAddr, usize)>,
}

/// The budget, or the address's share of it, has no room for more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetExhausted;

impl BodyBudget {
    pub fn new(total: usize, address_share: usize) -> Self {
        BodyBudget { total: Arc::new(Semaphore::new(total)), by_address: Arc::default(), address_share }
    }

    /// Adds `bytes` to what `held` holds for a request from `address`, if both the share of the
    /// address's network ([`berth_iam::client_network`]) and the total allow it.
    pub fn take(&self, held: &mut Held, address: Option<IpAddr>, bytes: usize) -> Result<(), BudgetExhausted> {
        if let Some(address) = address.map(berth_iam::client_network) {
            let mut by_address = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
            let charged = by_address.entry(address).or_default();
            if *charged + bytes > self.address_share {
                if *charged == 0 {
                    by_address.remove(&address);
                }
                return Err(BudgetExhausted);
            }
            *charged += bytes;
            let (_, _, mine) = held.address.get_or_insert_with(|| (self.by_address.clone(), address, 0));
            *mine += bytes;
        }
        let permit = u32::try_from(bytes)
            .ok()
            .and_then(|n| self.total.clone().try_acquire_many_owned(n).ok())
            .ok_or(BudgetExhausted)?;
        match &mut held.permit {
            Some(held) => held.merge(permit),
            None => held.permit = Some(permit),
        }
        Ok(())
    }

    /// Bytes nobody holds.
    pub fn available(&self) -> usize {
        self.total.available_permits()
    }

    /// Whether no address holds anything.
    pub fn no_address_charged(&self) -> bool {
        self.by_address.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }
}

/// Why [`read_whole`] stopped.
#[derive(Debug)]
pub enum ReadError<E> {
    /// The body is longer than the limit.
    TooLarge,
    /// The budget, or the client's share of it, has no room for more.
    Exhausted,
    /// The body failed (the connection broke, a body timeout ran out).
    Body(E),
}

/// Reads a request body whole, at most `limit` bytes, each chunk charged to `budget` (if any,
/// with the client's address) before it is kept; what it holds comes back when the returned
/// [`Held`] is dropped. `expected` bytes are reserved up front (a declared length, already
/// checked against `limit`: reserved, not touched, a length that lies costs address space only).
pub async fn read_whole<E>(
    chunks: impl futures::Stream<Item = Result<bytes::Bytes, E>>,
    limit: usize,
    expected: usize,
    budget: Option<(&BodyBudget, Option<IpAddr>)>,
) -> Result<(bytes::Bytes, Held), ReadError<E>> {
    use futures::StreamExt;
    let mut chunks = std::pin::pin!(chunks);
    let (mut content, mut held) = (bytes::BytesMut::with_capacity(expected.min(limit)), Held::default());
    while let Some(chunk) = chunks.next().await {
        let data = chunk.map_err(ReadError::Body)?;
        if data.len() > limit - content.len() {
            return Err(ReadError::TooLarge);
        }
        if let Some((budget, address)) = budget {
            budget.take(&mut held, address, data.len()).map_err(|_| ReadError::Exhausted)?;
        }
        content.extend_from_slice(&data);
    }
    Ok((content.freeze(), held))
}

impl Held {
    /// Whether it holds any of the total (false for a request read without a budget).
    pub fn holds_any(&self) -> bool {
        self.permit.is_some()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some((by_address, address, bytes)) = self.address.take() {
            let mut by_address = by_address.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(charged) = by_address.get_mut(&address) {
                *charged = charged.saturating_sub(bytes);
                if *charged == 0 {
                    by_address.remove(&address);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_per_network_and_come_back_when_dropped() {
        let budget = BodyBudget::new(100, 40);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let (mut first, mut second, mut other) = (Held::default(), Held::default(), Held::default());
        budget.take(&mut first, ip("2001:db8:0:1::a"), 30).unwrap();
        assert_eq!(budget.take(&mut second, ip("2001:db8:0:1::b"), 20), Err(BudgetExhausted), "same /64");
        budget.take(&mut other, ip("2001:db8:0:2::a"), 40).unwrap();
        assert_eq!(budget.available(), 30);
        drop(first);
        budget.take(&mut second, ip("2001:db8:0:1::b"), 20).unwrap();
        drop((second, other));
        assert!(budget.no_address_charged());
        assert_eq!(budget.available(), 100);
    }
}
