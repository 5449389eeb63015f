//! ECR's registry host names, `ACCOUNT.dkr.ecr.REGION.amazonaws.com`. A TLS certificate for one
//! says which account and region this server stands in for and the name its clients use, so a
//! drop-in under ECR's names needs no flag the certificate already answers: repository URIs,
//! `proxyEndpoint` and ARNs then match what the real ECR would print.

use std::path::Path;

use anyhow::Context;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use berth_ecr::names::registry_name;

/// Who this server is under ECR's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrIdentity {
    pub registry_id: String,
    pub region: String,
    /// `ACCOUNT.dkr.ecr.REGION.amazonaws.com` (or its FIPS or dual-stack form), the host of the
    /// default public URL.
    pub host: String,
    /// The certificate's name held the account, rather than a wildcard.
    pub named_account: bool,
}

/// The first registry name among `names` that agrees with the account and region given, if any;
/// it supplies whichever of them was not given. A wildcard name (`*.dkr.ecr.REGION.…`) takes the
/// account given, else ECR's placeholder one.
pub fn identity<'a>(
    names: impl IntoIterator<Item = &'a str>,
    registry_id: Option<&str>,
    region: Option<&str>,
) -> Option<EcrIdentity> {
    names.into_iter().find_map(|name| {
        let found = registry_name(name)?;
        let account = match found.account {
            "*" => registry_id.unwrap_or(crate::config::DEFAULT_REGISTRY_ID),
            id if registry_id.is_none_or(|given| given == id) => id,
            _ => return None,
        };
        if region.is_some_and(|given| given != found.region) {
            return None;
        }
        Some(EcrIdentity {
            registry_id: account.to_owned(),
            region: found.region.to_owned(),
            host: format!("{account}{}", &name[found.account.len()..]),
            named_account: found.account != "*",
        })
    })
}

/// The DNS names of the first (leaf) certificate in the PEM file at `path`.
pub fn certificate_dns_names(path: &Path) -> anyhow::Result<Vec<String>> {
    let leaf = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .next()
        .with_context(|| format!("no certificate in {}", path.display()))?
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    let parsed = webpki::EndEntityCert::try_from(&leaf)
        .map_err(|e| anyhow::anyhow!("parsing the certificate in {}: {e}", path.display()))?;
    Ok(parsed.valid_dns_names().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "123456789012";

    fn host(names: &[&str], id: Option<&str>, region: Option<&str>) -> Option<String> {
        identity(names.iter().copied(), id, region).map(|found| found.host)
    }

    #[test]
    fn a_registry_name_supplies_account_and_region() {
        let names = ["api.ecr.eu-west-1.amazonaws.com", "123456789012.dkr.ecr.eu-west-1.amazonaws.com"];
        let found = identity(names, None, None).unwrap();
        assert_eq!((found.registry_id.as_str(), found.region.as_str()), (ID, "eu-west-1"));
        assert_eq!(found.host, names[1]);
        let china = "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn";
        assert_eq!(host(&[china], None, None).as_deref(), Some(china));
    }

    #[test]
    fn names_that_disagree_with_the_flags_are_skipped() {
        let names = ["111111111111.dkr.ecr.us-east-1.amazonaws.com", "123456789012.dkr.ecr.us-west-2.amazonaws.com"];
        assert_eq!(host(&names, Some(ID), None).as_deref(), Some(names[1]));
        assert_eq!(host(&names, None, Some("us-west-2")).as_deref(), Some(names[1]));
        assert_eq!(host(&names, Some(ID), Some("us-east-1")), None);
    }

    #[test]
    fn a_wildcard_takes_the_account_given() {
        let names = ["*.dkr.ecr.us-east-1.amazonaws.com"];
        assert_eq!(host(&names, Some(ID), None).as_deref(), Some("123456789012.dkr.ecr.us-east-1.amazonaws.com"));
        assert_eq!(host(&names, None, None).as_deref(), Some("000000000000.dkr.ecr.us-east-1.amazonaws.com"));
    }

    #[test]
    fn fips_and_dual_stack_names_are_registry_names() {
        for name in [
            "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
            "123456789012.dkr-ecr.us-east-1.on.aws",
            "123456789012.dkr-ecr-fips.us-east-1.on.aws",
        ] {
            let found = identity([name], None, None).unwrap();
            assert_eq!(
                (found.registry_id.as_str(), found.region.as_str(), found.host.as_str()),
                (ID, "us-east-1", name)
            );
        }
        assert_eq!(
            host(&["*.dkr-ecr.eu-west-1.on.aws"], Some(ID), None).as_deref(),
            Some("123456789012.dkr-ecr.eu-west-1.on.aws")
        );
        assert_eq!(host(&["123456789012.dkr-ecr.us-east-1.amazonaws.com"], None, None), None);
        assert_eq!(host(&["123456789012.dkr.ecr.us-east-1.on.aws"], None, None), None);
    }

    #[test]
    fn reads_the_leaf_certificates_names() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["123456789012.dkr.ecr.us-east-1.amazonaws.com".to_owned(), "localhost".to_owned()];
        let generated = rcgen::generate_simple_self_signed(names.clone()).unwrap();
        let path = dir.path().join("cert.pem");
        std::fs::write(&path, generated.cert.pem()).unwrap();
        assert_eq!(certificate_dns_names(&path).unwrap(), names);
        std::fs::write(&path, "not a certificate").unwrap();
        assert!(certificate_dns_names(&path).is_err());
    }
}
