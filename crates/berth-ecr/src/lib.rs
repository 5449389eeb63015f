//! Amazon ECR's control-plane API (`awsJson1_1`, `POST /` with
//! `X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Operation>`), so the real `aws ecr`
//! CLI and the AWS SDKs work unmodified.
//!
//! This crate is the protocol layer only: SigV4 verification ([`sigv4`]), operation routing
//! ([`endpoint`]), the model's members ([`shapes`]) and constraints ([`validate`]), errors on the
//! wire ([`error`]), pagination tokens ([`pagination`]) and the handler ([`router`]). The
//! operations themselves are an [`EcrBackend`] implemented over the registry service.

pub mod backend;
pub mod endpoint;
pub mod error;
pub mod pagination;
pub mod router;
pub mod shapes;
pub mod sigv4;
pub mod validate;

pub use backend::EcrBackend;
pub use endpoint::Endpoint;
pub use error::EcrError;
pub use router::{Authentication, EcrService, handle, router};
pub use sigv4::{Principal, SecretLookup};
