//! ECR's registry host names: `ACCOUNT.dkr.ecr.REGION.amazonaws.com` (`.com.cn` in China), its
//! FIPS form `ACCOUNT.dkr.ecr-fips.REGION.amazonaws.com`, and the dual-stack
//! `ACCOUNT.dkr-ecr.REGION.on.aws` (and `dkr-ecr-fips`). The host is the registry: it names the
//! account whose repositories it holds.

use crate::validate::is_account_id;

/// An ECR registry host name taken apart.
#[derive(Debug, PartialEq, Eq)]
pub struct RegistryName<'a> {
    /// The account, or `*` in a wildcard certificate name.
    pub account: &'a str,
    pub region: &'a str,
}

/// Whether `region` reads as an AWS region name (`us-east-1`).
pub fn is_region(region: &str) -> bool {
    !region.is_empty() && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `name`, without a port and in lowercase, as one of ECR's registry host names.
pub fn registry_name(name: &str) -> Option<RegistryName<'_>> {
    let (account, rest) = name.split_once('.')?;
    let (region, suffix) = ["dkr.ecr.", "dkr.ecr-fips.", "dkr-ecr.", "dkr-ecr-fips."]
        .iter()
        .find_map(|service| rest.strip_prefix(service))?
        .split_once('.')?;
    let dual_stack = rest.starts_with("dkr-ecr");
    let suffix_fits =
        if dual_stack { suffix == "on.aws" } else { matches!(suffix, "amazonaws.com" | "amazonaws.com.cn") };
    (suffix_fits && is_region(region) && (account == "*" || is_account_id(account)))
        .then_some(RegistryName { account, region })
}

/// `host` (a request's `Host`, or a URL's) without its port, the root's trailing dot and case.
fn bare_name(host: &str) -> String {
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name);
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The account an ECR registry name in `host` names, if it is one (not a wildcard).
pub fn host_account(host: &str) -> Option<String> {
    registry_name(&bare_name(host)).map(|found| found.account.to_owned()).filter(|account| account != "*")
}

/// `host` (an ECR registry name, perhaps with a port) naming `account`'s registry instead, in
/// the same region and form; `None` if `host` is no account's registry name.
pub fn with_account(host: &str, account: &str) -> Option<String> {
    let own = host_account(host)?;
    let rest = host.get(own.len()..).filter(|rest| rest.starts_with('.'))?;
    Some(format!("{account}{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_are_registry_names() {
        for name in [
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
            "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
            "123456789012.dkr-ecr.us-east-1.on.aws",
            "123456789012.dkr-ecr-fips.us-east-1.on.aws",
        ] {
            assert_eq!(registry_name(name).map(|n| n.account), Some("123456789012"), "{name}");
        }
        assert_eq!(registry_name("*.dkr.ecr.eu-west-1.amazonaws.com").map(|n| n.region), Some("eu-west-1"));
        for name in [
            "registry.example.com",
            "12345.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.example.com",
            "123456789012.dkr.ecr.US-EAST-1.amazonaws.com",
            "123456789012.dkr.ecr.amazonaws.com",
            "x.123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr-ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.on.aws",
        ] {
            assert_eq!(registry_name(name), None, "{name}");
        }
    }

    #[test]
    fn a_host_names_its_account_with_or_without_a_port() {
        for host in [
            "210987654321.dkr.ecr.us-east-1.amazonaws.com",
            "210987654321.dkr.ecr.eu-west-1.amazonaws.com:443",
            "210987654321.dkr-ecr.us-east-1.on.aws:5000",
            "210987654321.DKR.ECR.US-EAST-1.AMAZONAWS.COM",
            "210987654321.dkr.ecr.us-east-1.amazonaws.com.:443",
        ] {
            assert_eq!(host_account(host).as_deref(), Some("210987654321"), "{host}");
        }
        for host in ["127.0.0.1:5000", "[::1]:5000", "registry.example.com", "*.dkr.ecr.us-east-1.amazonaws.com", ""] {
            assert_eq!(host_account(host), None, "{host}");
        }
    }

    #[test]
    fn another_accounts_name_keeps_the_form_region_and_port() {
        let other = "210987654321";
        assert_eq!(
            with_account("123456789012.dkr-ecr.eu-west-1.on.aws:5443", other).as_deref(),
            Some("210987654321.dkr-ecr.eu-west-1.on.aws:5443")
        );
        assert_eq!(with_account("123456789012.dkr.example.com", other), None);
        assert_eq!(with_account("127.0.0.1:5000", other), None);
    }
}
