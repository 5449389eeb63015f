//! The constraints of the model that botocore does not check client-side (it checks only
//! `required`, `min` and types): `max`, `pattern`, `enum`, numeric ranges, and ECR's
//! cross-member rules. Failures are `InvalidParameterException` in ECR's wording,
//! `Invalid parameter at '<member>' failed to satisfy constraint: '<constraint>'`, with list
//! members addressed as `imageIds.1.member.imageTag` like AWS's validator does.
//!
//! Per-item problems of batch operations (a malformed digest in `BatchGetImage.imageIds`, an
//! identifier with neither tag nor digest, ...) are not request errors: ECR reports them in
//! `failures`, so they are left to the backend.

use std::fmt;
use std::str::FromStr;

use berth_registry::lifecycle::{
    MAX_POLICY_LENGTH as MAX_LIFECYCLE_POLICY_LENGTH, MIN_POLICY_LENGTH as MIN_LIFECYCLE_POLICY_LENGTH,
};
use berth_spec::{RepositoryName, Tag as OciTag};

use crate::error::EcrError;
use crate::shapes::*;

/// `RepositoryName` in the current model (the OCI distribution name grammar).
pub const REPOSITORY_NAME_PATTERN: &str = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*";
const REGISTRY_ID_PATTERN: &str = "[0-9]{12}";
const LAYER_DIGEST_PATTERN: &str = "[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+";
const UPLOAD_ID_PATTERN: &str = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
const EXCLUSION_FILTER_PATTERN: &str = "^[0-9a-zA-Z._*-]{1,128}$";
const OCI_TAG_PATTERN: &str = "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}";

pub const MAX_RESULTS: i64 = 1000;
pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_REFERRER_RESULTS: i64 = 50;
pub const MAX_PREVIEW_RESULTS: i64 = 100;
pub const MAX_MANIFEST_BYTES: usize = 4_194_304;
pub const MAX_LAYER_PART_BYTES: usize = 20_971_520;
pub use berth_registry::settings::MAX_RESOURCE_TAGS;
const MAX_TAG_KEY_LEN: usize = 128;
const MAX_TAG_VALUE_LEN: usize = 256;

/// Checks a deserialised request before it reaches the backend.
pub trait Validate {
    fn validate(&self) -> Result<(), EcrError>;
}

fn invalid(member: &str, constraint: impl fmt::Display) -> EcrError {
    EcrError::invalid_parameter(member, &constraint.to_string())
}

fn element(list: &str, index: usize, member: &str) -> String {
    format!("{list}.{}.member{}{member}", index + 1, if member.is_empty() { "" } else { "." })
}

fn length(member: &str, value: &str, min: usize, max: usize) -> Result<(), EcrError> {
    let len = value.chars().count();
    if len < min {
        return Err(invalid(member, format!("Member must have length greater than or equal to {min}")));
    }
    if len > max {
        return Err(invalid(member, format!("Member must have length less than or equal to {max}")));
    }
    Ok(())
}

fn list_length<T>(member: &str, list: &[T], min: usize, max: usize) -> Result<(), EcrError> {
    if list.len() < min {
        return Err(invalid(member, format!("Member must have length greater than or equal to {min}")));
    }
    if list.len() > max {
        return Err(invalid(member, format!("Member must have length less than or equal to {max}")));
    }
    Ok(())
}

fn range(member: &str, value: i64, min: i64, max: i64) -> Result<(), EcrError> {
    if value < min {
        return Err(invalid(member, format!("Member must have value greater than or equal to {min}")));
    }
    if value > max {
        return Err(invalid(member, format!("Member must have value less than or equal to {max}")));
    }
    Ok(())
}

fn pattern(member: &str, matches: bool, regex: &str) -> Result<(), EcrError> {
    if matches {
        Ok(())
    } else {
        Err(invalid(member, format!("Member must satisfy regular expression pattern: {regex}")))
    }
}

fn enum_value(member: &str, unrecognized: bool, values: &[&str]) -> Result<(), EcrError> {
    if unrecognized {
        Err(invalid(member, format!("Member must satisfy enum value set: [{}]", values.join(", "))))
    } else {
        Ok(())
    }
}

/// An AWS account id: 12 digits (registry ids, and the account in every ARN).
pub fn is_account_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

fn registry_id(member: &str, id: &str) -> Result<(), EcrError> {
    pattern(member, is_account_id(id), REGISTRY_ID_PATTERN)
}

fn optional_registry_id(id: &Option<String>) -> Result<(), EcrError> {
    id.as_deref().map_or(Ok(()), |id| registry_id("registryId", id))
}

fn repository_name(member: &str, name: &str) -> Result<(), EcrError> {
    length(member, name, 2, 256)?;
    if RepositoryName::from_str(name).is_err() {
        // ECR's own wording for this member.
        return Err(invalid(member, format!("must satisfy regular expression '{REPOSITORY_NAME_PATTERN}'")));
    }
    Ok(())
}

fn max_results(value: Option<i64>, max: i64) -> Result<(), EcrError> {
    value.map_or(Ok(()), |n| range("maxResults", n, 1, max))
}

fn is_layer_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    !algorithm.is_empty()
        && algorithm.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'.'))
        && !hex.is_empty()
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_upload_id(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn image_ids(ids: &[ImageIdentifier]) -> Result<(), EcrError> {
    list_length("imageIds", ids, 1, 100)?;
    for (i, id) in ids.iter().enumerate() {
        if let Some(tag) = &id.image_tag {
            length(&element("imageIds", i, "imageTag"), tag, 1, 300)?;
        }
    }
    Ok(())
}

fn images_filter(filter: &Option<ImagesFilter>) -> Result<(), EcrError> {
    let Some(filter) = filter else { return Ok(()) };
    if let Some(status) = filter.tag_status {
        enum_value("filter.tagStatus", status == TagStatus::Unrecognized, TagStatus::VALUES)?;
    }
    if let Some(status) = filter.image_status {
        enum_value("filter.imageStatus", status == ImageStatusFilter::Unrecognized, ImageStatusFilter::VALUES)?;
    }
    Ok(())
}

/// `nextToken`/`maxResults` page through everything; they cannot be combined with a list of
/// named items.
fn no_paging_with(
    list_member: &str,
    listed: bool,
    next_token: &Option<String>,
    max: Option<i64>,
) -> Result<(), EcrError> {
    if listed && (next_token.is_some() || max.is_some()) {
        return Err(EcrError::InvalidParameter(format!(
            "Invalid parameter: nextToken and maxResults cannot be used when {list_member} is specified"
        )));
    }
    Ok(())
}

fn mutability(
    value: ImageTagMutability,
    filters: &Option<Vec<ImageTagMutabilityExclusionFilter>>,
) -> Result<(), EcrError> {
    const MEMBER: &str = "imageTagMutabilityExclusionFilters";
    enum_value("imageTagMutability", value == ImageTagMutability::Unrecognized, ImageTagMutability::VALUES)?;
    let wire = value.as_str();
    match filters {
        None if value.has_exclusions() => Err(invalid(
            MEMBER,
            format!("ImageTagMutabilityExclusionFilters can't be null when imageTagMutability is set as {wire}"),
        )),
        Some(_) if !value.has_exclusions() => Err(invalid(
            MEMBER,
            format!(
                "ImageTagMutabilityExclusionFilters can only be set when imageTagMutability is IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION, not {wire}"
            ),
        )),
        None => Ok(()),
        Some(filters) => exclusion_filters(filters),
    }
}

fn exclusion_filters(filters: &[ImageTagMutabilityExclusionFilter]) -> Result<(), EcrError> {
    const MEMBER: &str = "imageTagMutabilityExclusionFilters";
    list_length(MEMBER, filters, 1, 5)?;
    for (i, f) in filters.iter().enumerate() {
        enum_value(
            &element(MEMBER, i, "filterType"),
            f.filter_type == ImageTagMutabilityExclusionFilterType::Unrecognized,
            ImageTagMutabilityExclusionFilterType::VALUES,
        )?;
        let member = element(MEMBER, i, "filter");
        length(&member, &f.filter, 1, 128)?;
        let ok = f.filter.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'*' | b'-'));
        pattern(&member, ok, EXCLUSION_FILTER_PATTERN)?;
    }
    Ok(())
}

fn resource_tags(member: &str, tags: &[Tag]) -> Result<(), EcrError> {
    if tags.len() > MAX_RESOURCE_TAGS {
        return Err(EcrError::too_many_tags(MAX_RESOURCE_TAGS));
    }
    for (i, tag) in tags.iter().enumerate() {
        tag_key(&element(member, i, "Key"), &tag.key)?;
        let value_member = element(member, i, "Value");
        if tag.value.chars().count() > MAX_TAG_VALUE_LEN {
            return Err(EcrError::InvalidTagParameter(format!(
                "Invalid parameter at '{value_member}' failed to satisfy constraint: 'Member must have length less than or equal to {MAX_TAG_VALUE_LEN}'"
            )));
        }
        tag_characters(&value_member, &tag.value)?;
    }
    // Keys are unique in a request (AWS's tagging rules): with two values for one, a policy's
    // `aws:RequestTag` condition could judge one while the other is stored.
    let mut keys: Vec<&str> = tags.iter().map(|tag| tag.key.as_str()).collect();
    keys.sort_unstable();
    if let Some(pair) = keys.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(EcrError::InvalidTagParameter(format!(
            "Invalid parameter at '{member}' failed to satisfy constraint: 'Tag keys must be unique; '{}' is given more than once'",
            pair[0]
        )));
    }
    Ok(())
}

/// AWS's tagging rule for keys and values: letters, digits and spaces in any script, and
/// `_ . : / = + - @` — no control characters.
fn tag_characters(member: &str, text: &str) -> Result<(), EcrError> {
    let allowed = |c: char| c.is_alphanumeric() || (c.is_whitespace() && !c.is_control()) || "_.:/=+-@".contains(c);
    if text.chars().all(allowed) {
        return Ok(());
    }
    Err(EcrError::InvalidTagParameter(format!(
        "Invalid parameter at '{member}' failed to satisfy constraint: 'Member must satisfy regular expression pattern: ^([\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]*)$'"
    )))
}

fn tag_key(member: &str, key: &str) -> Result<(), EcrError> {
    removable_tag_key(member, key)?;
    // In any letter case, as AWS's tagging rules say.
    if key.get(..4).is_some_and(|prefix| prefix.eq_ignore_ascii_case("aws:")) {
        return Err(reserved_tag_key(member));
    }
    tag_characters(member, key)
}

/// What UntagResource checks: lighter than a new key's rules, so keys stored before they were
/// enforced (`AWS:x`, `a#b`) can still be removed.
fn removable_tag_key(member: &str, key: &str) -> Result<(), EcrError> {
    let len = key.chars().count();
    if len == 0 || len > MAX_TAG_KEY_LEN {
        return Err(EcrError::InvalidTagParameter(format!(
            "Invalid parameter at '{member}' failed to satisfy constraint: 'Member must have length between 1 and {MAX_TAG_KEY_LEN}'"
        )));
    }
    if key.starts_with("aws:") {
        return Err(reserved_tag_key(member));
    }
    Ok(())
}

fn reserved_tag_key(member: &str) -> EcrError {
    EcrError::InvalidTagParameter(format!(
        "Invalid parameter at '{member}' failed to satisfy constraint: 'Tag keys starting with aws: are reserved for AWS use'"
    ))
}

/// A repository ARN, `arn:aws:ecr:<region>:<registryId>:repository/<name>`, the only
/// resource the tagging operations take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryArn {
    pub region: String,
    pub registry_id: String,
    pub repository_name: String,
}

impl RepositoryArn {
    pub fn new(region: &str, registry_id: &str, repository_name: &str) -> Self {
        RepositoryArn {
            region: region.into(),
            registry_id: registry_id.into(),
            repository_name: repository_name.into(),
        }
    }
}

impl FromStr for RepositoryArn {
    type Err = EcrError;

    fn from_str(arn: &str) -> Result<Self, EcrError> {
        let bad = || invalid("resourceArn", "Invalid ARN");
        let mut parts = arn.splitn(6, ':');
        let (Some("arn"), Some(partition), Some("ecr"), Some(region), Some(account), Some(resource)) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let name = resource.strip_prefix("repository/").ok_or_else(bad)?;
        // Berth's ARNs are all in the `aws` partition (`RepositoryArn::new`).
        if partition != "aws" || !crate::names::is_region(region) || registry_id("resourceArn", account).is_err() {
            return Err(bad());
        }
        repository_name("resourceArn", name).map_err(|_| bad())?;
        Ok(RepositoryArn { region: region.into(), registry_id: account.into(), repository_name: name.into() })
    }
}

impl fmt::Display for RepositoryArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "arn:aws:ecr:{}:{}:repository/{}", self.region, self.registry_id, self.repository_name)
    }
}

// ---- page sizes, once validated

impl DescribeRepositoriesRequest {
    pub fn page_size(&self) -> usize {
        self.max_results.map_or(DEFAULT_PAGE_SIZE, |n| n.clamp(1, MAX_RESULTS) as usize)
    }
}

impl DescribeImagesRequest {
    pub fn page_size(&self) -> usize {
        self.max_results.map_or(DEFAULT_PAGE_SIZE, |n| n.clamp(1, MAX_RESULTS) as usize)
    }
}

impl ListImagesRequest {
    pub fn page_size(&self) -> usize {
        self.max_results.map_or(DEFAULT_PAGE_SIZE, |n| n.clamp(1, MAX_RESULTS) as usize)
    }
}

impl GetLifecyclePolicyPreviewRequest {
    pub fn page_size(&self) -> usize {
        self.max_results.map_or(MAX_PREVIEW_RESULTS as usize, |n| n.clamp(1, MAX_PREVIEW_RESULTS) as usize)
    }
}

impl ListImageReferrersRequest {
    pub fn page_size(&self) -> usize {
        self.max_results.map_or(MAX_REFERRER_RESULTS as usize, |n| n.clamp(1, MAX_REFERRER_RESULTS) as usize)
    }
}

// ---- one impl per request

impl Validate for GetAuthorizationTokenRequest {
    fn validate(&self) -> Result<(), EcrError> {
        if let Some(ids) = &self.registry_ids {
            list_length("registryIds", ids, 1, 10)?;
            for (i, id) in ids.iter().enumerate() {
                registry_id(&element("registryIds", i, ""), id)?;
            }
        }
        Ok(())
    }
}

impl Validate for CreateRepositoryRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)?;
        if let Some(tags) = &self.tags {
            resource_tags("tags", tags)?;
        }
        mutability(
            self.image_tag_mutability.unwrap_or(ImageTagMutability::Mutable),
            &self.image_tag_mutability_exclusion_filters,
        )?;
        if let Some(encryption) = &self.encryption_configuration {
            enum_value(
                "encryptionConfiguration.encryptionType",
                encryption.encryption_type == EncryptionType::Unrecognized,
                EncryptionType::VALUES,
            )?;
            if let Some(key) = &encryption.kms_key {
                length("encryptionConfiguration.kmsKey", key, 1, 2048)?;
            }
        }
        Ok(())
    }
}

impl Validate for DescribeRepositoriesRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        if let Some(names) = &self.repository_names {
            list_length("repositoryNames", names, 1, 100)?;
            for (i, name) in names.iter().enumerate() {
                repository_name(&element("repositoryNames", i, ""), name)?;
            }
        }
        max_results(self.max_results, MAX_RESULTS)?;
        no_paging_with("repositoryNames", self.repository_names.is_some(), &self.next_token, self.max_results)
    }
}

impl Validate for DeleteRepositoryRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)
    }
}

impl Validate for DescribeImagesRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)?;
        if let Some(ids) = &self.image_ids {
            image_ids(ids)?;
        }
        max_results(self.max_results, MAX_RESULTS)?;
        images_filter(&self.filter)?;
        no_paging_with("imageIds", self.image_ids.is_some(), &self.next_token, self.max_results)
    }
}

impl Validate for ListImagesRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)?;
        max_results(self.max_results, MAX_RESULTS)?;
        images_filter(&self.filter)
    }
}

impl Validate for BatchGetImageRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)?;
        image_ids(&self.image_ids)?;
        if let Some(types) = &self.accepted_media_types {
            list_length("acceptedMediaTypes", types, 1, 100)?;
        }
        Ok(())
    }
}

impl Validate for PutImageRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)?;
        if self.image_manifest.is_empty() {
            return Err(invalid("imageManifest", "Member must have length greater than or equal to 1"));
        }
        // Bytes, as the /v2/ plane's limit counts: the model counts characters (up to four
        // bytes each in UTF-8), so the message says which.
        if self.image_manifest.len() > MAX_MANIFEST_BYTES {
            return Err(invalid(
                "imageManifest",
                format!("Member must have length less than or equal to {MAX_MANIFEST_BYTES} (bytes, as UTF-8)"),
            ));
        }
        if let Some(tag) = &self.image_tag {
            length("imageTag", tag, 1, 300)?;
            // Stricter than the model: a tag outside the OCI grammar could never be pulled
            // through /v2/, which shares the tags.
            if OciTag::from_str(tag).is_err() {
                return Err(invalid("imageTag", format!("must satisfy regular expression '{OCI_TAG_PATTERN}'")));
            }
        }
        if let Some(digest) = &self.image_digest {
            pattern("imageDigest", is_layer_digest(digest), LAYER_DIGEST_PATTERN)?;
        }
        Ok(())
    }
}

impl Validate for BatchDeleteImageRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)?;
        image_ids(&self.image_ids)
    }
}

impl Validate for BatchCheckLayerAvailabilityRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)?;
        list_length("layerDigests", &self.layer_digests, 1, 100)?;
        for (i, digest) in self.layer_digests.iter().enumerate() {
            length(&element("layerDigests", i, ""), digest, 0, 1000)?;
        }
        Ok(())
    }
}

impl Validate for InitiateLayerUploadRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)
    }
}

impl Validate for UploadLayerPartRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)?;
        pattern("uploadId", is_upload_id(&self.upload_id), UPLOAD_ID_PATTERN)?;
        range("partFirstByte", self.part_first_byte, 0, i64::MAX)?;
        range("partLastByte", self.part_last_byte, 0, i64::MAX)?;
        if self.layer_part_blob.len() > MAX_LAYER_PART_BYTES {
            return Err(invalid(
                "layerPartBlob",
                format!("Member must have length less than or equal to {MAX_LAYER_PART_BYTES}"),
            ));
        }
        Ok(())
    }
}

impl Validate for CompleteLayerUploadRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)?;
        pattern("uploadId", is_upload_id(&self.upload_id), UPLOAD_ID_PATTERN)?;
        list_length("layerDigests", &self.layer_digests, 1, 100)?;
        for (i, digest) in self.layer_digests.iter().enumerate() {
            pattern(&element("layerDigests", i, ""), is_layer_digest(digest), LAYER_DIGEST_PATTERN)?;
        }
        Ok(())
    }
}

impl Validate for GetDownloadUrlForLayerRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)?;
        pattern("layerDigest", is_layer_digest(&self.layer_digest), LAYER_DIGEST_PATTERN)
    }
}

impl Validate for TagResourceRequest {
    fn validate(&self) -> Result<(), EcrError> {
        RepositoryArn::from_str(&self.resource_arn)?;
        resource_tags("tags", &self.tags)
    }
}

impl Validate for UntagResourceRequest {
    fn validate(&self) -> Result<(), EcrError> {
        RepositoryArn::from_str(&self.resource_arn)?;
        for (i, key) in self.tag_keys.iter().enumerate() {
            removable_tag_key(&element("tagKeys", i, ""), key)?;
        }
        Ok(())
    }
}

impl Validate for ListTagsForResourceRequest {
    fn validate(&self) -> Result<(), EcrError> {
        RepositoryArn::from_str(&self.resource_arn).map(drop)
    }
}

impl Validate for DescribeRegistryRequest {
    fn validate(&self) -> Result<(), EcrError> {
        Ok(())
    }
}

impl Validate for PutImageScanningConfigurationRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)
    }
}

/// The model's `ReplicationConfiguration` constraints; ECR's further rules (limits, no
/// replication to itself) are the registry's.
impl Validate for PutReplicationConfigurationRequest {
    fn validate(&self) -> Result<(), EcrError> {
        let rules = &self.replication_configuration.rules;
        list_length("replicationConfiguration.rules", rules, 0, 10)?;
        for (i, rule) in rules.iter().enumerate() {
            let at = |member: &str| element("replicationConfiguration.rules", i, member);
            list_length(&at("destinations"), &rule.destinations, 0, 100)?;
            for (j, destination) in rule.destinations.iter().enumerate() {
                let member = format!("{}.region", element(&at("destinations"), j, ""));
                length(&member, &destination.region, 2, 25)?;
                pattern(&member, crate::names::is_region(&destination.region), "[0-9a-z-]{2,25}")?;
                registry_id(&format!("{}.registryId", element(&at("destinations"), j, "")), &destination.registry_id)?;
            }
            if let Some(filters) = &rule.repository_filters {
                list_length(&at("repositoryFilters"), filters, 1, 100)?;
                for (j, filter) in filters.iter().enumerate() {
                    let base = element(&at("repositoryFilters"), j, "");
                    length(&format!("{base}.filter"), &filter.filter, 2, 256)?;
                    pattern(
                        &format!("{base}.filter"),
                        is_repository_filter(&filter.filter),
                        "^(?:[a-z0-9]+(?:[._-][a-z0-9]*)*/)*[a-z0-9]*(?:[._-][a-z0-9]*)*$",
                    )?;
                    enum_value(
                        &format!("{base}.filterType"),
                        filter.filter_type == RepositoryFilterType::Unrecognized,
                        RepositoryFilterType::VALUES,
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// `RepositoryFilterValue`: a repository name prefix, which may end in the middle of a component
/// or after a separator.
fn is_repository_filter(filter: &str) -> bool {
    let components: Vec<&str> = filter.split('/').collect();
    let (last, whole) = components.split_last().expect("split yields at least one item");
    let component = |c: &str, complete: bool| {
        let starts_alnum = c.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        (starts_alnum || (!complete && c.is_empty()))
            && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    };
    whole.iter().all(|c| component(c, true)) && component(last, false)
}

impl Validate for ImageRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)?;
        image_ids(std::slice::from_ref(&self.image_id))
    }
}

impl Validate for DescribeImageScanFindingsRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)?;
        image_ids(std::slice::from_ref(&self.image_id))?;
        max_results(self.max_results, MAX_RESULTS)
    }
}

impl Validate for UpdateImageStorageClassRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)?;
        image_ids(std::slice::from_ref(&self.image_id))?;
        enum_value(
            "targetStorageClass",
            self.target_storage_class == TargetStorageClass::Unrecognized,
            TargetStorageClass::VALUES,
        )
    }
}

impl Validate for PutRegistryScanningConfigurationRequest {
    fn validate(&self) -> Result<(), EcrError> {
        if let Some(scan_type) = self.scan_type {
            enum_value("scanType", scan_type == ScanTypeInput::Unrecognized, ScanTypeInput::VALUES)?;
        }
        let rules = self.rules.as_deref().unwrap_or_default();
        list_length("rules", rules, 0, 2)?;
        for (i, rule) in rules.iter().enumerate() {
            let member = |name: &str| format!("rules.{}.member.{name}", i + 1);
            let frequency = &member("scanFrequency");
            enum_value(frequency, rule.scan_frequency == ScanFrequency::Unrecognized, ScanFrequency::VALUES)?;
            let filters = &member("repositoryFilters");
            list_length(filters, &rule.repository_filters, 1, 100)?;
            for (j, f) in rule.repository_filters.iter().enumerate() {
                let kind = element(filters, j, "filterType");
                let unknown = f.filter_type == ScanningRepositoryFilterType::Unrecognized;
                enum_value(&kind, unknown, ScanningRepositoryFilterType::VALUES)?;
                let filter = element(filters, j, "filter");
                length(&filter, &f.filter, 1, 255)?;
                pattern(&filter, is_scanning_filter(&f.filter), SCANNING_FILTER_PATTERN)?;
            }
        }
        Ok(())
    }
}

/// A registry scanning rule's repository filter: a repository name that may hold `*`.
const SCANNING_FILTER_PATTERN: &str = "^[a-z0-9*](?:[._-]?[a-z0-9*]+)*(?:/[a-z0-9*]+(?:[._-][a-z0-9*]+)*)*$";

/// `SCANNING_FILTER_PATTERN`: each `/`-separated part starts and ends with a letter, digit or
/// `*`, with single `.`, `_` or `-` between them.
fn is_scanning_filter(filter: &str) -> bool {
    let word = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'*';
    filter.split('/').all(|part| {
        let bytes = part.as_bytes();
        !bytes.is_empty()
            && word(bytes[0])
            && word(bytes[bytes.len() - 1])
            && bytes.windows(2).all(|w| word(w[0]) || word(w[1]))
            && bytes.iter().all(|&b| word(b) || matches!(b, b'.' | b'_' | b'-'))
    })
}

impl Validate for PutSigningConfigurationRequest {
    fn validate(&self) -> Result<(), EcrError> {
        Ok(())
    }
}

impl Validate for SigningConfigurationRequest {
    fn validate(&self) -> Result<(), EcrError> {
        Ok(())
    }
}

impl Validate for GetRegistryScanningConfigurationRequest {
    fn validate(&self) -> Result<(), EcrError> {
        Ok(())
    }
}

impl Validate for GetRegistryPolicyRequest {
    fn validate(&self) -> Result<(), EcrError> {
        Ok(())
    }
}

impl Validate for DeleteRegistryPolicyRequest {
    fn validate(&self) -> Result<(), EcrError> {
        Ok(())
    }
}

/// The model's `RegistryPolicyText`: at most 10,240 characters (the policy itself is checked by
/// the service).
impl Validate for PutRegistryPolicyRequest {
    fn validate(&self) -> Result<(), EcrError> {
        if self.policy_text.chars().count() > 10_240 {
            return Err(EcrError::invalid_parameter(
                "policyText",
                "Member must have length less than or equal to 10240",
            ));
        }
        Ok(())
    }
}

/// The model's `AccountSettingName`: 1 to 64 characters (which names exist is the service's).
fn account_setting_name(name: &str) -> Result<(), EcrError> {
    if (1..=64).contains(&name.chars().count()) {
        Ok(())
    } else {
        Err(EcrError::invalid_parameter("name", "Member must have length between 1 and 64"))
    }
}

impl Validate for GetAccountSettingRequest {
    fn validate(&self) -> Result<(), EcrError> {
        account_setting_name(&self.name)
    }
}

impl Validate for PutAccountSettingRequest {
    fn validate(&self) -> Result<(), EcrError> {
        account_setting_name(&self.name)
    }
}

impl Validate for BatchGetRepositoryScanningConfigurationRequest {
    fn validate(&self) -> Result<(), EcrError> {
        list_length("repositoryNames", &self.repository_names, 1, 25)?;
        for (i, name) in self.repository_names.iter().enumerate() {
            repository_name(&element("repositoryNames", i, ""), name)?;
        }
        Ok(())
    }
}

impl Validate for ListImageReferrersRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)?;
        pattern("subjectId.imageDigest", is_layer_digest(&self.subject_id.image_digest), LAYER_DIGEST_PATTERN)?;
        if let Some(filter) = &self.filter {
            if let Some(types) = &filter.artifact_types {
                list_length("filter.artifactTypes", types, 0, 5)?;
                for (i, artifact_type) in types.iter().enumerate() {
                    length(&element("filter.artifactTypes", i, ""), artifact_type, 1, 255)?;
                }
            }
            if let Some(status) = filter.artifact_status {
                enum_value(
                    "filter.artifactStatus",
                    status == ArtifactStatusFilter::Unrecognized,
                    ArtifactStatusFilter::VALUES,
                )?;
            }
        }
        max_results(self.max_results, MAX_REFERRER_RESULTS)
    }
}

impl Validate for PutImageTagMutabilityRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)?;
        mutability(self.image_tag_mutability, &self.image_tag_mutability_exclusion_filters)
    }
}

fn lifecycle_policy_text(text: &str) -> Result<(), EcrError> {
    length("lifecyclePolicyText", text, MIN_LIFECYCLE_POLICY_LENGTH, MAX_LIFECYCLE_POLICY_LENGTH)
}

impl Validate for PutLifecyclePolicyRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)?;
        lifecycle_policy_text(&self.lifecycle_policy_text)
    }
}

impl Validate for LifecyclePolicyRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)
    }
}

impl Validate for StartLifecyclePolicyPreviewRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)?;
        self.lifecycle_policy_text.as_deref().map_or(Ok(()), lifecycle_policy_text)
    }
}

impl Validate for GetLifecyclePolicyPreviewRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)?;
        if let Some(ids) = &self.image_ids {
            image_ids(ids)?;
        }
        max_results(self.max_results, MAX_PREVIEW_RESULTS)?;
        if let Some(status) = self.filter.as_ref().and_then(|f| f.tag_status) {
            enum_value("filter.tagStatus", status == TagStatus::Unrecognized, TagStatus::VALUES)?;
        }
        no_paging_with("imageIds", self.image_ids.is_some(), &self.next_token, self.max_results)
    }
}

impl Validate for SetRepositoryPolicyRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)?;
        length("policyText", &self.policy_text, 0, berth_iam::SizeLimit::REPOSITORY_POLICY.max())
    }
}

impl Validate for RepositoryPolicyRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        repository_name("repositoryName", &self.repository_name)
    }
}

/// `PullThroughCacheRuleRepositoryPrefix`: a repository-name prefix (an optional trailing `/`)
/// or `ROOT`, 2 to 30 characters.
const CACHE_PREFIX_PATTERN: &str =
    r"^([a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*\/?|ROOT)$";
const CREDENTIAL_ARN_PATTERN: &str =
    r"^arn:aws(-\w+)*:secretsmanager:[a-zA-Z0-9-:]+:secret:ecr\-pullthroughcache\/[a-zA-Z0-9\/_+=.@-]+$";

fn cache_prefix(member: &str, prefix: &str) -> Result<(), EcrError> {
    length(member, prefix, 2, 30)?;
    let name = prefix.strip_suffix('/').unwrap_or(prefix);
    pattern(member, prefix == "ROOT" || RepositoryName::from_str(name).is_ok(), CACHE_PREFIX_PATTERN)
}

/// `CREDENTIAL_ARN_PATTERN`, spelled out.
fn is_credential_arn(arn: &str) -> bool {
    let word = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let Some((head, name)) = arn.split_once(":secret:ecr-pullthroughcache/") else { return false };
    let Some((partition, scope)) = head.split_once(":secretsmanager:") else { return false };
    let partition_ok = partition
        .strip_prefix("arn:aws")
        .is_some_and(|rest| rest.is_empty() || rest.strip_prefix('-').is_some_and(|r| r.split('-').all(word)));
    partition_ok
        && !scope.is_empty()
        && scope.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b':')
        && !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
}

fn credential_arn(arn: &Option<String>) -> Result<(), EcrError> {
    let Some(arn) = arn else { return Ok(()) };
    length("credentialArn", arn, 50, 612)?;
    pattern("credentialArn", is_credential_arn(arn), CREDENTIAL_ARN_PATTERN)
}

/// The model only bounds its length; an IAM role ARN is the only value that means anything (and
/// this keeps control characters, which PostgreSQL's text cannot hold, out of the store).
fn custom_role_arn(arn: &Option<String>) -> Result<(), EcrError> {
    let Some(arn) = arn else { return Ok(()) };
    length("customRoleArn", arn, 0, 2048)?;
    pattern("customRoleArn", arn.is_empty() || is_role_arn(arn), ROLE_ARN_PATTERN)
}

impl Validate for CreatePullThroughCacheRuleRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        cache_prefix("ecrRepositoryPrefix", &self.ecr_repository_prefix)?;
        if let Some(upstream) = self.upstream_registry {
            enum_value("upstreamRegistry", upstream == UpstreamRegistry::Unrecognized, UpstreamRegistry::VALUES)?;
        }
        credential_arn(&self.credential_arn)?;
        custom_role_arn(&self.custom_role_arn)?;
        if let Some(prefix) = &self.upstream_repository_prefix {
            cache_prefix("upstreamRepositoryPrefix", prefix)?;
            // ECR's user guide: an upstream prefix only goes with a non-ROOT ECR prefix.
            if self.ecr_repository_prefix == "ROOT" && prefix != "ROOT" {
                return Err(invalid(
                    "upstreamRepositoryPrefix",
                    "an upstream repository prefix other than ROOT needs an ecrRepositoryPrefix other than ROOT",
                ));
            }
        }
        if self.upstream_registry_url.is_empty() {
            return Err(invalid("upstreamRegistryUrl", "Member must not be empty"));
        }
        // Stored and echoed as given, so nothing the URL parser would trim or drop.
        if self.upstream_registry_url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid("upstreamRegistryUrl", "Member must not contain spaces or control characters"));
        }
        let known = UpstreamRegistry::of_url(&self.upstream_registry_url);
        if let (Some(given), Some(known)) = (self.upstream_registry, known)
            && given != known
        {
            return Err(invalid(
                "upstreamRegistry",
                format!(
                    "'{}' is not the registry at {} ('{}')",
                    given.as_str(),
                    self.upstream_registry_url,
                    known.as_str()
                ),
            ));
        }
        // The ROOT prefix and upstream prefixes are for ECR to ECR rules ("Customizing repository
        // prefixes for ECR to ECR pull through cache"); a ROOT rule for a public registry would
        // also put every repository of this registry under the cache, refusing their pushes.
        // A host ECR does not know (a self-hosted registry) may use both.
        if let Some(public) = self.upstream_registry.or(known).filter(|r| *r != UpstreamRegistry::Ecr) {
            let upstream_prefix = self.upstream_repository_prefix.as_deref().unwrap_or("ROOT");
            if self.ecr_repository_prefix == "ROOT" || upstream_prefix != "ROOT" {
                let member = if self.ecr_repository_prefix == "ROOT" {
                    "ecrRepositoryPrefix"
                } else {
                    "upstreamRepositoryPrefix"
                };
                return Err(invalid(
                    member,
                    format!(
                        "ROOT and upstream repository prefixes are for ECR to ECR pull through cache rules, not '{}'",
                        public.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Validate for DescribePullThroughCacheRulesRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        if let Some(prefixes) = &self.ecr_repository_prefixes {
            list_length("ecrRepositoryPrefixes", prefixes, 1, 100)?;
            for (i, prefix) in prefixes.iter().enumerate() {
                cache_prefix(&element("ecrRepositoryPrefixes", i, ""), prefix)?;
            }
        }
        // Unlike DescribeRepositories' names, the prefixes may be paged through (not refused).
        max_results(self.max_results, MAX_RESULTS)
    }
}

impl Validate for UpdatePullThroughCacheRuleRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        cache_prefix("ecrRepositoryPrefix", &self.ecr_repository_prefix)?;
        credential_arn(&self.credential_arn)?;
        custom_role_arn(&self.custom_role_arn)
    }
}

impl Validate for PullThroughCacheRuleRequest {
    fn validate(&self) -> Result<(), EcrError> {
        optional_registry_id(&self.registry_id)?;
        cache_prefix("ecrRepositoryPrefix", &self.ecr_repository_prefix)
    }
}

/// `Prefix` of a creation template: a repository-name prefix (an optional trailing `/`) or
/// `ROOT`, 1 to 256 characters.
fn template_prefix(member: &str, prefix: &str) -> Result<(), EcrError> {
    length(member, prefix, 1, 256)?;
    let name = prefix.strip_suffix('/').unwrap_or(prefix);
    pattern(member, prefix == "ROOT" || RepositoryName::from_str(name).is_ok(), CACHE_PREFIX_PATTERN)
}

/// The members Create and Update share; `applied_for` is checked by the caller.
/// `arn:aws[-partition]:kms:REGION:ACCOUNT:key/ID`, the key ARN a creation template may name.
fn is_kms_key_arn(key: &str) -> bool {
    let lower_word =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let Some((partition, rest)) = key.strip_prefix("arn:aws").and_then(|rest| rest.split_once(":kms:")) else {
        return false;
    };
    let mut fields = rest.splitn(3, ':');
    let (Some(region), Some(account), Some(resource)) = (fields.next(), fields.next(), fields.next()) else {
        return false;
    };
    (partition.is_empty() || lower_word(partition))
        && lower_word(region)
        && is_account_id(account)
        && resource.strip_prefix("key/").is_some_and(lower_word)
}

/// A template's members; `update` lets exclusion filters come without a mode (they join the
/// stored one, which the registry checks).
fn template_members(members: &TemplateMembers, update: bool) -> Result<(), EcrError> {
    let TemplateMembers {
        prefix,
        description,
        encryption_configuration: encryption,
        resource_tags: tags,
        image_tag_mutability: mutability_value,
        image_tag_mutability_exclusion_filters: filters,
        repository_policy,
        lifecycle_policy,
        custom_role_arn: role,
        applied_for: _,
    } = members;
    template_prefix("prefix", prefix)?;
    if let Some(description) = description {
        length("description", description, 0, 256)?;
    }
    if let Some(encryption) = encryption {
        enum_value(
            "encryptionConfiguration.encryptionType",
            encryption.encryption_type == EncryptionType::Unrecognized,
            EncryptionType::VALUES,
        )?;
        if let Some(key) = &encryption.kms_key {
            length("encryptionConfiguration.kmsKey", key, 0, 2048)?;
            pattern(
                "encryptionConfiguration.kmsKey",
                key.is_empty() || is_kms_key_arn(key),
                "^$|arn:aws[a-z0-9-]*:kms:[a-z0-9-]+:[0-9]{12}:key\\/[a-z0-9-]+",
            )?;
        }
    }
    if let Some(tags) = tags {
        // ECR's template operations have no tag exceptions: their tag checks answer
        // InvalidParameterException.
        resource_tags("resourceTags", tags).map_err(|e| match e {
            EcrError::InvalidTagParameter(message) | EcrError::TooManyTags(message) => {
                EcrError::InvalidParameter(message)
            }
            other => other,
        })?;
    }
    match (*mutability_value, filters) {
        (Some(value), _) => mutability(value, filters)?,
        (None, Some(filters)) if update => exclusion_filters(filters)?,
        (None, Some(_)) => mutability(ImageTagMutability::Mutable, filters)?,
        (None, None) => {}
    }
    if let Some(text) = repository_policy {
        length("repositoryPolicy", text, 0, berth_iam::SizeLimit::REPOSITORY_POLICY.max())?;
    }
    if let Some(text) = lifecycle_policy {
        length("lifecyclePolicy", text, 0, 30720)?;
    }
    custom_role_arn(role)
}

/// A `customRoleArn` (creation templates, pull-through cache rules): an IAM role of some account.
const ROLE_ARN_PATTERN: &str = r"^arn:aws[-a-z0-9]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,-.@_]*$";

/// `ROLE_ARN_PATTERN`, spelled out.
fn is_role_arn(arn: &str) -> bool {
    let Some((partition, rest)) = arn.strip_prefix("arn:aws").and_then(|rest| rest.split_once(":iam::")) else {
        return false;
    };
    let Some((account, name)) = rest.split_once(":role/") else { return false };
    partition.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && is_account_id(account)
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,-.@_".contains(&b))
}

fn applied_for(values: &[RctAppliedFor]) -> Result<(), EcrError> {
    for (i, value) in values.iter().enumerate() {
        enum_value(&element("appliedFor", i, ""), *value == RctAppliedFor::Unrecognized, RctAppliedFor::VALUES)?;
    }
    Ok(())
}

impl Validate for CreateRepositoryCreationTemplateRequest {
    fn validate(&self) -> Result<(), EcrError> {
        // Required, as a missing member serde reports (`router::decode`) would be: first.
        let Some(values) = &self.members.applied_for else {
            return Err(EcrError::invalid_parameter("appliedFor", "Member must not be null"));
        };
        template_members(&self.members, false)?;
        applied_for(values)
    }
}

impl Validate for UpdateRepositoryCreationTemplateRequest {
    fn validate(&self) -> Result<(), EcrError> {
        template_members(&self.members, true)?;
        self.members.applied_for.as_deref().map_or(Ok(()), applied_for)
    }
}

impl Validate for DescribeRepositoryCreationTemplatesRequest {
    fn validate(&self) -> Result<(), EcrError> {
        if let Some(prefixes) = &self.prefixes {
            for (i, prefix) in prefixes.iter().enumerate() {
                template_prefix(&element("prefixes", i, ""), prefix)?;
            }
        }
        max_results(self.max_results, MAX_RESULTS)
    }
}

impl Validate for DeleteRepositoryCreationTemplateRequest {
    fn validate(&self) -> Result<(), EcrError> {
        template_prefix("prefix", &self.prefix)
    }
}

/// `PrincipalArn`: an IAM user or role of some account.
const PRINCIPAL_ARN_PATTERN: &str = r"^arn:aws(-[a-z]+)*:iam::[0-9]{12}:(role|user)/[\w+=,.@-]+(/[\w+=,.@-]+)*$";

/// `PRINCIPAL_ARN_PATTERN`, spelled out.
fn is_principal_arn(arn: &str) -> bool {
    let Some(rest) = arn.strip_prefix("arn:aws") else { return false };
    let Some((partition, rest)) = rest.split_once(":iam::") else { return false };
    let partition_ok = partition.split('-').skip(1).all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && (partition.is_empty() || partition.starts_with('-'));
    let Some((account, path)) = rest.split_once(':') else { return false };
    let Some(path) = path.strip_prefix("user/").or_else(|| path.strip_prefix("role/")) else { return false };
    let word = |b: u8| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b);
    partition_ok && is_account_id(account) && path.split('/').all(|part| !part.is_empty() && part.bytes().all(word))
}

impl Validate for PullTimeUpdateExclusionRequest {
    fn validate(&self) -> Result<(), EcrError> {
        length("principalArn", &self.principal_arn, 0, 200)?;
        pattern("principalArn", is_principal_arn(&self.principal_arn), PRINCIPAL_ARN_PATTERN)
    }
}

impl Validate for ListPullTimeUpdateExclusionsRequest {
    fn validate(&self) -> Result<(), EcrError> {
        max_results(self.max_results, MAX_RESULTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_arns_are_iam_users_or_roles() {
        for ok in ["arn:aws:iam::123456789012:user/ci", "arn:aws-cn:iam::123456789012:role/path/to/Role_1+x"] {
            assert!(is_principal_arn(ok), "{ok}");
        }
        for bad in [
            "arn:aws:iam::123456789012:root",
            "arn:aws:iam::12345678901:user/ci",
            "arn:aws:iam::123456789012:user/",
            "arn:aws:iam::123456789012:group/ci",
            "arn:aws-:iam::123456789012:user/ci",
            "arn:aws:iam::123456789012:user/c i",
        ] {
            assert!(!is_principal_arn(bad), "{bad}");
        }
    }

    #[test]
    fn template_prefixes_are_names_or_root() {
        assert!(template_prefix("prefix", "ROOT").is_ok());
        assert!(template_prefix("prefix", "prod/").is_ok());
        assert!(template_prefix("prefix", "p").is_ok());
        assert!(template_prefix("prefix", "Prod").is_err());
        assert!(template_prefix("prefix", "").is_err());
    }
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    #[test]
    fn pull_through_cache_members_follow_the_model() {
        let arn = "arn:aws:secretsmanager:us-east-1:000000000000:secret:ecr-pullthroughcache/hub";
        assert!(is_credential_arn(arn));
        assert!(is_credential_arn("arn:aws-us-gov:secretsmanager:us-gov-west-1:1:secret:ecr-pullthroughcache/a/b"));
        for bad in [
            "arn:aws:secretsmanager:us-east-1:000000000000:secret:other/hub",
            "arn:aws:secretsmanager:us-east-1:000000000000:secret:ecr-pullthroughcache/",
            "arn:awsx:secretsmanager:us-east-1:000000000000:secret:ecr-pullthroughcache/hub",
            "arn:aws:secretsmanager:us-east-1:000000000000:secret:ecr-pullthroughcache/h ub",
        ] {
            assert!(!is_credential_arn(bad), "{bad}");
        }
        let ok = |prefix: &str| cache_prefix("ecrRepositoryPrefix", prefix).is_ok();
        assert!(ok("ROOT") && ok("docker-hub") && ok("quay/") && ok("a/b"));
        assert!(!ok("a") && !ok("Hub") && !ok("/hub") && !ok(&"a".repeat(31)));

        // A self-hosted upstream (a host ECR does not know) may use ROOT and upstream prefixes.
        let rule = |ecr: &str, upstream: &str| json!({"ecrRepositoryPrefix": ecr, "upstreamRegistryUrl": "registry.internal:5000", "upstreamRepositoryPrefix": upstream});
        assert_eq!(check::<CreatePullThroughCacheRuleRequest>(rule("mirror", "team")), Ok(()));
        assert_eq!(check::<CreatePullThroughCacheRuleRequest>(rule("ROOT", "ROOT")), Ok(()));
        let message = rejected::<CreatePullThroughCacheRuleRequest>(rule("ROOT", "team"));
        assert!(message.contains("needs an ecrRepositoryPrefix other than ROOT"), "{message}");
    }

    #[test]
    fn cache_rules_know_the_public_upstreams_by_url() {
        use UpstreamRegistry as U;
        for (url, registry) in [
            ("public.ecr.aws", Some(U::EcrPublic)),
            ("https://registry-1.docker.io", Some(U::DockerHub)),
            ("ghcr.io/", Some(U::GithubContainerRegistry)),
            ("REGISTRY.K8S.IO", Some(U::K8s)),
            ("GHCR.IO.", Some(U::GithubContainerRegistry)),
            ("myteam.azurecr.io", Some(U::AzureContainerRegistry)),
            ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", Some(U::Ecr)),
            ("https://user:secret@GHCR.io:443/v2/", Some(U::GithubContainerRegistry)),
            ("ghcr.io@127.0.0.1:5000", None),
            ("127.0.0.1:5000", None),
            ("quay.io.example.com", None),
        ] {
            assert_eq!(U::of_url(url), registry, "{url}");
        }
        for bad in [" ghcr.io", "quay.io\n", "quay.io\u{0}", "http://127.0.0.1:5000\t", "quay .io"] {
            let message = rejected::<CreatePullThroughCacheRuleRequest>(
                json!({"ecrRepositoryPrefix": "team", "upstreamRegistryUrl": bad}),
            );
            assert!(message.contains("'upstreamRegistryUrl'"), "{bad:?}: {message}");
        }
        let rule = |request: Value| check::<CreatePullThroughCacheRuleRequest>(request);
        let message = rejected::<CreatePullThroughCacheRuleRequest>(
            json!({"ecrRepositoryPrefix": "ROOT", "upstreamRegistryUrl": "ghcr.io"}),
        );
        assert!(
            message.contains("for ECR to ECR pull through cache rules, not 'github-container-registry'"),
            "{message}"
        );
        let message = rejected::<CreatePullThroughCacheRuleRequest>(
            json!({"ecrRepositoryPrefix": "k8s", "upstreamRegistryUrl": "registry.k8s.io", "upstreamRepositoryPrefix": "foo"}),
        );
        assert!(message.contains("upstreamRepositoryPrefix"), "{message}");
        let message = rejected::<CreatePullThroughCacheRuleRequest>(
            json!({"ecrRepositoryPrefix": "hub", "upstreamRegistryUrl": "ghcr.io", "upstreamRegistry": "docker-hub"}),
        );
        assert!(message.contains("'docker-hub' is not the registry at ghcr.io"), "{message}");
        assert_eq!(rule(json!({"ecrRepositoryPrefix": "k8s", "upstreamRegistryUrl": "registry.k8s.io"})), Ok(()));
        let ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        assert_eq!(rule(json!({"ecrRepositoryPrefix": "ROOT", "upstreamRegistryUrl": ecr})), Ok(()));
        assert_eq!(
            rule(
                json!({"ecrRepositoryPrefix": "mirror", "upstreamRegistryUrl": ecr, "upstreamRepositoryPrefix": "team"})
            ),
            Ok(())
        );
    }

    #[test]
    fn replication_members_are_addressed_like_aws_does() {
        let message = rejected::<PutReplicationConfigurationRequest>(json!({"replicationConfiguration": {"rules": [
            {"destinations": [{"region": "us-west-2", "registryId": "000000000000"}], "repositoryFilters": []}]}}));
        assert!(
            message.starts_with("Invalid parameter at 'replicationConfiguration.rules.1.member.repositoryFilters'"),
            "{message}"
        );
    }

    fn check<T: DeserializeOwned + Validate>(request: Value) -> Result<(), (String, String)> {
        let request: T = serde_json::from_value(request).expect("test request deserialises");
        request.validate().map_err(|e| (e.wire_type().to_owned(), e.to_string()))
    }

    fn rejected<T: DeserializeOwned + Validate>(request: Value) -> String {
        let (wire_type, message) = check::<T>(request.clone()).expect_err(&format!("{request} is rejected"));
        assert_eq!(wire_type, "InvalidParameterException", "{message}");
        message
    }

    #[test]
    fn repository_names_follow_the_model_grammar_and_length() {
        for ok in ["ab", "team/app", "a.b_c__d---e/f0", &"a".repeat(256)] {
            assert_eq!(check::<DeleteRepositoryRequest>(json!({"repositoryName": ok})), Ok(()), "{ok}");
        }
        assert_eq!(
            rejected::<DeleteRepositoryRequest>(json!({"repositoryName": "Team/App"})),
            format!(
                "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '{REPOSITORY_NAME_PATTERN}''"
            )
        );
        for bad in ["a", "/app", "app/", "a//b", "a..b", "a-", "-a", "a___b", "a b"] {
            rejected::<DeleteRepositoryRequest>(json!({"repositoryName": bad}));
        }
        assert_eq!(
            rejected::<DeleteRepositoryRequest>(json!({"repositoryName": "a".repeat(257)})),
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'Member must have length less than or equal to 256'"
        );
        assert_eq!(
            rejected::<DescribeRepositoriesRequest>(json!({"repositoryNames": ["ok", "NO"]})),
            format!(
                "Invalid parameter at 'repositoryNames.2.member' failed to satisfy constraint: 'must satisfy regular expression '{REPOSITORY_NAME_PATTERN}''"
            )
        );
    }

    #[test]
    fn scanning_configuration_batches_name_one_to_twenty_five_repositories() {
        let names = |n: usize| json!({"repositoryNames": (0..n).map(|i| format!("team/r{i}")).collect::<Vec<_>>()});
        type Batch = BatchGetRepositoryScanningConfigurationRequest;
        assert_eq!(check::<Batch>(names(1)), Ok(()));
        assert_eq!(check::<Batch>(names(25)), Ok(()));
        assert_eq!(
            rejected::<Batch>(names(0)),
            "Invalid parameter at 'repositoryNames' failed to satisfy constraint: 'Member must have length greater than or equal to 1'"
        );
        assert_eq!(
            rejected::<Batch>(names(26)),
            "Invalid parameter at 'repositoryNames' failed to satisfy constraint: 'Member must have length less than or equal to 25'"
        );
        assert!(
            rejected::<Batch>(json!({"repositoryNames": ["team/ok", "Team/No"]}))
                .starts_with("Invalid parameter at 'repositoryNames.2.member'")
        );
    }

    #[test]
    fn registry_ids_are_twelve_digits() {
        assert_eq!(
            check::<InitiateLayerUploadRequest>(json!({"repositoryName": "app", "registryId": "000000000000"})),
            Ok(())
        );
        for bad in ["00000000000", "0000000000000", "00000000000a", ""] {
            assert_eq!(
                rejected::<InitiateLayerUploadRequest>(json!({"repositoryName": "app", "registryId": bad})),
                "Invalid parameter at 'registryId' failed to satisfy constraint: 'Member must satisfy regular expression pattern: [0-9]{12}'"
            );
        }
        rejected::<GetAuthorizationTokenRequest>(json!({"registryIds": ["123"]}));
        rejected::<GetAuthorizationTokenRequest>(json!({"registryIds": vec!["000000000000"; 11]}));
    }

    #[test]
    fn max_results_ranges_differ_per_operation() {
        for op_ok in [1, 1000] {
            assert_eq!(check::<ListImagesRequest>(json!({"repositoryName": "app", "maxResults": op_ok})), Ok(()));
        }
        assert_eq!(
            rejected::<ListImagesRequest>(json!({"repositoryName": "app", "maxResults": 1001})),
            "Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value less than or equal to 1000'"
        );
        assert_eq!(
            rejected::<DescribeImagesRequest>(json!({"repositoryName": "app", "maxResults": 0})),
            "Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value greater than or equal to 1'"
        );
        let referrers = |max: i64| json!({"repositoryName": "app", "subjectId": {"imageDigest": format!("sha256:{}", "a".repeat(64))}, "maxResults": max});
        assert_eq!(check::<ListImageReferrersRequest>(referrers(50)), Ok(()));
        rejected::<ListImageReferrersRequest>(referrers(51));
        let findings = |max: i64| json!({"repositoryName": "app", "imageId": {"imageTag": "v1"}, "maxResults": max});
        assert_eq!(check::<DescribeImageScanFindingsRequest>(findings(1000)), Ok(()));
        rejected::<DescribeImageScanFindingsRequest>(findings(0));
        rejected::<DescribeImageScanFindingsRequest>(findings(1001));

        let request: ListImageReferrersRequest = serde_json::from_value(referrers(7)).unwrap();
        assert_eq!(request.page_size(), 7);
        let request: DescribeRepositoriesRequest = serde_json::from_value(json!({})).unwrap();
        assert_eq!(request.page_size(), DEFAULT_PAGE_SIZE);
    }

    #[test]
    fn paging_cannot_be_combined_with_named_items() {
        rejected::<DescribeRepositoriesRequest>(json!({"repositoryNames": ["app"], "maxResults": 5}));
        rejected::<DescribeImagesRequest>(
            json!({"repositoryName": "app", "imageIds": [{"imageTag": "v1"}], "nextToken": "x"}),
        );
        assert_eq!(
            check::<DescribeImagesRequest>(json!({"repositoryName": "app", "imageIds": [{"imageTag": "v1"}]})),
            Ok(())
        );
    }

    #[test]
    fn image_ids_need_one_to_hundred_entries_and_bounded_tags() {
        assert_eq!(
            rejected::<BatchDeleteImageRequest>(json!({"repositoryName": "app", "imageIds": []})),
            "Invalid parameter at 'imageIds' failed to satisfy constraint: 'Member must have length greater than or equal to 1'"
        );
        rejected::<BatchGetImageRequest>(
            json!({"repositoryName": "app", "imageIds": vec![json!({"imageTag": "v"}); 101]}),
        );
        assert_eq!(
            rejected::<BatchGetImageRequest>(
                json!({"repositoryName": "app", "imageIds": [{"imageTag": "v1"}, {"imageTag": "x".repeat(301)}]})
            ),
            "Invalid parameter at 'imageIds.2.member.imageTag' failed to satisfy constraint: 'Member must have length less than or equal to 300'"
        );
        // Malformed digests and empty identifiers are per-item failures, not request errors.
        assert_eq!(
            check::<BatchDeleteImageRequest>(
                json!({"repositoryName": "app", "imageIds": [{"imageDigest": "nope"}, {}]})
            ),
            Ok(())
        );
    }

    #[test]
    fn enums_accept_exactly_the_model_values() {
        for status in ["TAGGED", "UNTAGGED", "ANY"] {
            assert_eq!(
                check::<ListImagesRequest>(json!({"repositoryName": "app", "filter": {"tagStatus": status}})),
                Ok(())
            );
        }
        assert_eq!(
            rejected::<ListImagesRequest>(json!({"repositoryName": "app", "filter": {"tagStatus": "tagged"}})),
            "Invalid parameter at 'filter.tagStatus' failed to satisfy constraint: 'Member must satisfy enum value set: [TAGGED, UNTAGGED, ANY]'"
        );
        rejected::<DescribeImagesRequest>(json!({"repositoryName": "app", "filter": {"imageStatus": "GONE"}}));
        rejected::<CreateRepositoryRequest>(
            json!({"repositoryName": "app", "encryptionConfiguration": {"encryptionType": "ROT13"}}),
        );
    }

    #[test]
    fn tag_mutability_has_four_modes_and_exclusion_filters_go_with_two() {
        let put = |mode: &str, filters: Option<Value>| {
            let mut request = json!({"repositoryName": "app", "imageTagMutability": mode});
            if let Some(filters) = filters {
                request["imageTagMutabilityExclusionFilters"] = filters;
            }
            check::<PutImageTagMutabilityRequest>(request)
        };
        let dev =
            json!([{"filterType": "WILDCARD", "filter": "dev-*"}, {"filterType": "WILDCARD", "filter": "*.rc_1"}]);
        assert_eq!(put("MUTABLE", None), Ok(()));
        assert_eq!(put("IMMUTABLE", None), Ok(()));
        assert_eq!(put("IMMUTABLE_WITH_EXCLUSION", Some(dev.clone())), Ok(()));
        assert_eq!(put("MUTABLE_WITH_EXCLUSION", Some(dev.clone())), Ok(()));

        let (_, message) = put("SOMETIMES", None).unwrap_err();
        assert_eq!(
            message,
            "Invalid parameter at 'imageTagMutability' failed to satisfy constraint: 'Member must satisfy enum value set: [MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION]'"
        );
        let (_, message) = put("IMMUTABLE_WITH_EXCLUSION", None).unwrap_err();
        assert_eq!(
            message,
            "Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy constraint: 'ImageTagMutabilityExclusionFilters can't be null when imageTagMutability is set as IMMUTABLE_WITH_EXCLUSION'"
        );
        assert!(put("IMMUTABLE", Some(dev)).is_err());
        assert!(put("MUTABLE_WITH_EXCLUSION", Some(json!([]))).is_err());
        assert!(
            put("MUTABLE_WITH_EXCLUSION", Some(json!(vec![json!({"filterType": "WILDCARD", "filter": "a*"}); 6])))
                .is_err()
        );
        assert!(put("MUTABLE_WITH_EXCLUSION", Some(json!([{"filterType": "REGEX", "filter": "a*"}]))).is_err());
        let (_, message) =
            put("MUTABLE_WITH_EXCLUSION", Some(json!([{"filterType": "WILDCARD", "filter": "dev/*"}]))).unwrap_err();
        assert_eq!(
            message,
            "Invalid parameter at 'imageTagMutabilityExclusionFilters.1.member.filter' failed to satisfy constraint: 'Member must satisfy regular expression pattern: ^[0-9a-zA-Z._*-]{1,128}$'"
        );
        assert!(
            put("MUTABLE_WITH_EXCLUSION", Some(json!([{"filterType": "WILDCARD", "filter": "a".repeat(129)}])))
                .is_err()
        );

        // CreateRepository: absent mode is MUTABLE, which takes no filters.
        assert!(check::<CreateRepositoryRequest>(json!({"repositoryName": "app", "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "x"}]})).is_err());
    }

    #[test]
    fn put_image_bounds_the_manifest_and_the_tag() {
        let put = |extra: Value| {
            let mut request = json!({"repositoryName": "app", "imageManifest": "{}"});
            request.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            check::<PutImageRequest>(request)
        };
        assert_eq!(put(json!({"imageTag": "v1.0_rc-1", "imageDigest": format!("sha256:{}", "ab".repeat(32))})), Ok(()));
        assert!(put(json!({"imageManifest": ""})).is_err());
        assert!(put(json!({"imageManifest": " ".repeat(MAX_MANIFEST_BYTES + 1)})).is_err());
        assert!(put(json!({"imageTag": ""})).is_err());
        let (_, message) = put(json!({"imageTag": "v1:latest"})).unwrap_err();
        assert_eq!(
            message,
            format!(
                "Invalid parameter at 'imageTag' failed to satisfy constraint: 'must satisfy regular expression '{OCI_TAG_PATTERN}''"
            )
        );
        assert!(put(json!({"imageTag": "x".repeat(129)})).is_err());
        assert!(put(json!({"imageDigest": "sha256"})).is_err());
    }

    #[test]
    fn layer_requests_check_digests_upload_ids_and_part_bounds() {
        let upload = "5f0bd0a4-40b8-4a5f-a1d3-7dbe0b8f3d3a";
        let digest = format!("sha256:{}", "0".repeat(64));
        assert_eq!(
            check::<GetDownloadUrlForLayerRequest>(json!({"repositoryName": "app", "layerDigest": digest})),
            Ok(())
        );
        assert_eq!(
            rejected::<GetDownloadUrlForLayerRequest>(json!({"repositoryName": "app", "layerDigest": "sha256:xyz"})),
            "Invalid parameter at 'layerDigest' failed to satisfy constraint: 'Member must satisfy regular expression pattern: [a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'"
        );
        assert_eq!(
            check::<CompleteLayerUploadRequest>(
                json!({"repositoryName": "app", "uploadId": upload, "layerDigests": [digest]})
            ),
            Ok(())
        );
        rejected::<CompleteLayerUploadRequest>(
            json!({"repositoryName": "app", "uploadId": "not-a-uuid", "layerDigests": [digest]}),
        );
        rejected::<CompleteLayerUploadRequest>(
            json!({"repositoryName": "app", "uploadId": upload, "layerDigests": ["nope"]}),
        );
        // BatchCheckLayerAvailability reports malformed digests as failures; only length is checked.
        assert_eq!(
            check::<BatchCheckLayerAvailabilityRequest>(json!({"repositoryName": "app", "layerDigests": ["nope"]})),
            Ok(())
        );
        rejected::<BatchCheckLayerAvailabilityRequest>(
            json!({"repositoryName": "app", "layerDigests": ["x".repeat(1001)]}),
        );

        let part = |first: i64, last: i64| json!({"repositoryName": "app", "uploadId": upload, "partFirstByte": first, "partLastByte": last, "layerPartBlob": "aGk="});
        assert_eq!(check::<UploadLayerPartRequest>(part(0, 1)), Ok(()));
        assert_eq!(
            rejected::<UploadLayerPartRequest>(part(-1, 1)),
            "Invalid parameter at 'partFirstByte' failed to satisfy constraint: 'Member must have value greater than or equal to 0'"
        );
    }

    #[test]
    fn resource_tags_and_arns() {
        let arn = "arn:aws:ecr:us-east-1:000000000000:repository/team/app";
        let parsed: RepositoryArn = arn.parse().unwrap();
        assert_eq!(parsed, RepositoryArn::new("us-east-1", "000000000000", "team/app"));
        assert_eq!(parsed.to_string(), arn);
        for bad in [
            "arn:aws:ecs:us-east-1:000000000000:repository/app",
            "arn:aws:ecr:us-east-1:0000:repository/app",
            "arn:aws:ecr:us-east-1:000000000000:registry/app",
            "arn:aws:ecr:us-east-1:000000000000:repository/App",
            "team/app",
        ] {
            assert_eq!(
                rejected::<ListTagsForResourceRequest>(json!({"resourceArn": bad})),
                "Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN'"
            );
        }

        let tag = |key: &str, value: &str| json!({"Key": key, "Value": value});
        assert_eq!(
            check::<TagResourceRequest>(json!({"resourceArn": arn, "tags": [tag("team", "web"), tag("empty", "")]})),
            Ok(())
        );
        let (wire_type, message) =
            check::<TagResourceRequest>(json!({"resourceArn": arn, "tags": [tag(&"k".repeat(129), "v")]})).unwrap_err();
        assert_eq!(wire_type, "InvalidTagParameterException");
        assert!(message.contains("'tags.1.member.Key'"), "{message}");
        let (wire_type, _) =
            check::<TagResourceRequest>(json!({"resourceArn": arn, "tags": [tag("k", &"v".repeat(257))]})).unwrap_err();
        assert_eq!(wire_type, "InvalidTagParameterException");
        let (wire_type, _) =
            check::<UntagResourceRequest>(json!({"resourceArn": arn, "tagKeys": ["aws:cloudformation:stack-name"]}))
                .unwrap_err();
        assert_eq!(wire_type, "InvalidTagParameterException");
        for (key, value) in [("AWS:x", "v"), ("Aws:x", "v"), ("k\u{1}", "v"), ("k", "tab\there"), ("k#", "v")] {
            let (wire_type, message) =
                check::<TagResourceRequest>(json!({"resourceArn": arn, "tags": [tag(key, value)]})).unwrap_err();
            assert_eq!(wire_type, "InvalidTagParameterException", "{key:?}={value:?}: {message}");
        }
        // Keys stored before these rules can still be removed.
        assert_eq!(check::<UntagResourceRequest>(json!({"resourceArn": arn, "tagKeys": ["AWS:x", "a#b"]})), Ok(()));
        let worldwide = [tag("Équipe/ベルト", "a b\u{a0}c"), tag("x_y.z:w=+-@", "")];
        assert_eq!(check::<TagResourceRequest>(json!({"resourceArn": arn, "tags": worldwide})), Ok(()));
        // One key twice: a policy could judge one value while the other is stored.
        for request in [
            json!({"resourceArn": arn, "tags": [tag("team", "a"), tag("x", ""), tag("team", "b")]}),
            json!({"repositoryName": "app", "tags": [tag("team", "a"), tag("team", "a")]}),
        ] {
            let refused = match request.get("resourceArn") {
                Some(_) => check::<TagResourceRequest>(request),
                None => check::<CreateRepositoryRequest>(request),
            };
            let (wire_type, message) = refused.unwrap_err();
            assert_eq!(wire_type, "InvalidTagParameterException");
            assert!(message.contains("'team' is given more than once"), "{message}");
        }
        let many: Vec<Value> = (0..51).map(|i| tag(&format!("k{i}"), "v")).collect();
        let (wire_type, _) =
            check::<CreateRepositoryRequest>(json!({"repositoryName": "app", "tags": many})).unwrap_err();
        assert_eq!(wire_type, "TooManyTagsException");
    }

    #[test]
    fn a_templates_kms_key_and_role_are_arns_of_their_kind() {
        let template = |key: &str| {
            json!({"prefix": "team", "appliedFor": ["CREATE_ON_PUSH"],
                   "encryptionConfiguration": {"encryptionType": "KMS", "kmsKey": key}})
        };
        for ok in [
            "",
            "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws-cn:kms:cn-north-1:123456789012:key/k1",
        ] {
            assert_eq!(check::<CreateRepositoryCreationTemplateRequest>(template(ok)), Ok(()), "{ok}");
        }
        let role = |arn: &str| json!({"prefix": "team", "appliedFor": ["CREATE_ON_PUSH"], "customRoleArn": arn});
        for ok in
            ["", "arn:aws:iam::123456789012:role/ecr-templates", "arn:aws-cn:iam::123456789012:role/a+b=c,d.e@f_g-h"]
        {
            assert_eq!(check::<CreateRepositoryCreationTemplateRequest>(role(ok)), Ok(()), "{ok}");
        }
        for bad in [
            "notanarn",
            "arn:aws:iam::123456789012:user/ci",
            "arn:aws:iam::1234:role/r",
            "arn:aws:iam::123456789012:role/path/r",
        ] {
            let message = rejected::<CreateRepositoryCreationTemplateRequest>(role(bad));
            assert!(message.contains("'customRoleArn'"), "{bad}: {message}");
        }
        // Create requires appliedFor (before any other member's check); Update does not.
        let without = json!({"prefix": "team", "customRoleArn": "notanarn"});
        let message = rejected::<CreateRepositoryCreationTemplateRequest>(without);
        assert!(message.contains("'appliedFor'") && message.contains("must not be null"), "{message}");
        assert_eq!(check::<UpdateRepositoryCreationTemplateRequest>(json!({"prefix": "team"})), Ok(()));
        for bad in [
            "garbage",
            "arn:aws:kms:us-east-1:123456789012:alias/mine",
            "arn:aws:kms:us-east-1:1234:key/k",
            "arn:aws:kms:us-east-1:123456789012:key/",
            "arn:aws:s3:us-east-1:123456789012:key/k",
        ] {
            let message = rejected::<CreateRepositoryCreationTemplateRequest>(template(bad));
            assert!(message.contains("'encryptionConfiguration.kmsKey'"), "{bad}: {message}");
        }
    }

    #[test]
    fn scanning_rule_filters_follow_the_model_pattern() {
        let rules = |filter: &str, frequency: &str| {
            json!({"scanType": "BASIC", "rules": [{"scanFrequency": frequency,
                   "repositoryFilters": [{"filter": filter, "filterType": "WILDCARD"}]}]})
        };
        let longest = "a".repeat(255);
        for ok in ["*", "prod/*", "team-a/app_1.x", "a*b/c-*", &longest] {
            assert_eq!(check::<PutRegistryScanningConfigurationRequest>(rules(ok, "SCAN_ON_PUSH")), Ok(()), "{ok}");
        }
        let too_long = "a".repeat(256);
        for bad in ["", "Prod", "a//b", "-a", "a-", "a--b", "a/", "a b", &too_long] {
            let message = rejected::<PutRegistryScanningConfigurationRequest>(rules(bad, "MANUAL"));
            assert!(message.contains("repositoryFilters"), "{bad:?}: {message}");
        }
        let message = rejected::<PutRegistryScanningConfigurationRequest>(rules("*", "HOURLY"));
        assert!(message.contains("scanFrequency"), "{message}");
        let none = json!({"scanType": "BASIC", "rules": [{"scanFrequency": "MANUAL", "repositoryFilters": []}]});
        assert!(rejected::<PutRegistryScanningConfigurationRequest>(none).contains("repositoryFilters"));
    }

    #[test]
    fn template_tag_errors_are_the_operations_own_exceptions() {
        let tags = |tags: Value| json!({"prefix": "team", "appliedFor": ["CREATE_ON_PUSH"], "resourceTags": tags});
        let many: Vec<Value> = (0..51).map(|i| json!({"Key": format!("k{i}"), "Value": "v"})).collect();
        for bad in [
            json!([{"Key": "k".repeat(129), "Value": "v"}]),
            json!([{"Key": "aws:owner", "Value": "v"}]),
            json!([{"Key": "k", "Value": "a"}, {"Key": "k", "Value": "b"}]),
            Value::Array(many),
        ] {
            let message = rejected::<CreateRepositoryCreationTemplateRequest>(tags(bad.clone()));
            assert!(message.to_lowercase().contains("tag"), "{bad}: {message}");
            rejected::<UpdateRepositoryCreationTemplateRequest>(tags(bad));
        }
        // Filters alone are checked against the stored mode (by the registry), not MUTABLE.
        let filters = json!({"prefix": "team", "imageTagMutabilityExclusionFilters":
                             [{"filterType": "WILDCARD", "filter": "rel-*"}]});
        assert_eq!(check::<UpdateRepositoryCreationTemplateRequest>(filters.clone()), Ok(()));
        let message = rejected::<CreateRepositoryCreationTemplateRequest>(
            json!({"appliedFor": ["CREATE_ON_PUSH"], "prefix": "team", "imageTagMutabilityExclusionFilters":
                   [{"filterType": "WILDCARD", "filter": "rel-*"}]}),
        );
        assert!(message.contains("not MUTABLE"), "{message}");
        let message = rejected::<UpdateRepositoryCreationTemplateRequest>(
            json!({"prefix": "team", "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "a b"}]}),
        );
        assert!(message.contains("filter"), "{message}");
    }
}
