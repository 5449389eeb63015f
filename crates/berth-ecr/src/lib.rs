//! Amazon ECR's control-plane API (`awsJson1_1`, `POST /` with
//! `X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Operation>`), so the real `aws ecr`
//! CLI and the AWS SDKs work unmodified.
//!
//! The protocol layer: SigV4 verification ([`sigv4`]), operation routing
//! ([`endpoint`]), the model's members ([`shapes`]) and constraints ([`validate`]), the resources
//! each request touches ([`authorization`]), errors on the wire ([`error`]), pagination tokens
//! ([`pagination`]) and the handler ([`router`]). The
//! operations are [`RegistryBackend`], an [`EcrBackend`] over the registry service
//! ([`service`]); the layer URLs it hands out are served by [`download::router`].

pub mod authorization;
pub mod backend;
pub mod download;
pub mod endpoint;
pub mod error;
mod mapping;
pub mod names;
pub mod pagination;
mod policy_text;
pub mod router;
pub mod service;
pub mod shapes;
pub mod sigv4;
mod strict_json;
pub mod tokens;
pub mod validate;

pub use authorization::{Resources, Scoped};
pub use backend::EcrBackend;
pub use endpoint::Endpoint;
pub use error::EcrError;
pub use router::{Authentication, EcrService, handle, router};
pub use service::{EcrConfig, RegistryBackend};
pub use sigv4::{SecretLookup, SigningKey};
pub use tokens::{AuthDisabledTokens, IssuedToken, TokenIssuer};
