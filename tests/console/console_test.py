#!/usr/bin/env python3
"""The Berth console in headless Chromium (Selenium), against a server run.sh prepared.

Checks what a person sees against what real clients say: the platform matrix against
`docker manifest inspect`, the lifecycle preview against `aws ecr get-lifecycle-policy-preview`;
that a user denied ecr:BatchDeleteImage sees no delete button and a forged POST changes nothing;
that forms without a CSRF token or from another origin are refused. Saves a screenshot of every
page to $ARTIFACTS. Prints PASS/FAIL lines and "N passed, M failed" last.
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

BASE = os.environ["BASE"]
REG = os.environ["REG"]
EXPECT = os.environ["EXPECT"]
ARTIFACTS = os.environ["ARTIFACTS"]
WEB = os.environ["WEB"]
LC = os.environ["LC"]
ROOT = (os.environ["ROOT_KEY"], os.environ["ROOT_SECRET"])
READER = (os.environ["READER_KEY"], os.environ["READER_SECRET"])
ROOT_TOKEN = os.environ["ROOT_TOKEN"]

passed = failed = 0


def ok(message):
    global passed
    passed += 1
    print(f"PASS: {message}", flush=True)


def bad(message):
    global failed
    failed += 1
    print(f"FAIL: {message}", flush=True)


def expect(description, got, want):
    if got == want:
        ok(description)
    else:
        bad(f"{description}: got {got!r}, want {want!r}")


def load(name):
    with open(os.path.join(EXPECT, name)) as f:
        return json.load(f)


# ---------------------------------------------------------------- plain HTTP beside the browser


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def http(method, path, data=None, headers=None):
    """(status, body) of a request to the server; redirects are not followed."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(BASE + path, data=body, method=method, headers=headers or {})
    if body is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with OPENER.open(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def registry_has(repo, reference):
    """Whether /v2/ (as root) still serves the manifest."""
    auth = base64.b64encode(f"{ROOT[0]}:{ROOT[1]}".encode()).decode()
    accept = ", ".join([
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ])
    status, _ = http("HEAD", f"/v2/{repo}/manifests/{reference}", headers={"Authorization": f"Basic {auth}", "Accept": accept})
    return status == 200


def v2_tags(repo):
    auth = base64.b64encode(f"{ROOT[0]}:{ROOT[1]}".encode()).decode()
    status, body = http("GET", f"/v2/{repo}/tags/list", headers={"Authorization": f"Basic {auth}"})
    return json.loads(body).get("tags") or [] if status == 200 else None


# ---------------------------------------------------------------- the browser


def browser():
    profile = tempfile.mkdtemp(prefix="berth-console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,900",
        "--force-prefers-reduced-motion", "--lang=en-US",
    ]:
        options.add_argument(flag)
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(service=service, options=options)
    driver.implicitly_wait(0)
    return driver, profile


def wait(driver, condition, timeout=10):
    return WebDriverWait(driver, timeout).until(condition)


def shot(driver, name, full_page=True):
    """A full-page screenshot through the DevTools protocol, from the top of the page (or what
    the window shows, for a modal dialog)."""
    if not full_page:
        driver.save_screenshot(os.path.join(ARTIFACTS, f"{name}.png"))
        return
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 6000), "scale": 1}
    picture = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
    with open(os.path.join(ARTIFACTS, f"{name}.png"), "wb") as f:
        f.write(base64.b64decode(picture["data"]))


def one(driver, css):
    return driver.find_element(By.CSS_SELECTOR, css)


def settled(driver, page):
    """Waits until `page` (the old document's root) is gone and the new document has finished
    loading, so elements found next belong to the document that stays."""
    wait(driver, EC.staleness_of(page))
    wait(driver, lambda d: d.execute_script("return document.readyState") == "complete")


def retry(action, attempts=3):
    """Runs `action` (which locates the elements it uses) again if ChromeDriver lost the
    document they were found in before it was done: a stale element, or "Node with given id does
    not belong to the document", which ChromeDriver raises now and then on a page that has just
    loaded; any other error, or the third such one, raises."""
    for attempt in range(attempts):
        try:
            return action()
        except (StaleElementReferenceException, WebDriverException) as error:
            replaced = isinstance(error, StaleElementReferenceException) or "does not belong to the document" in str(error)
            if not replaced or attempt == attempts - 1:
                raise
            time.sleep(0.2)


def click(locate):
    """Clicks what `locate()` finds (see `retry`)."""
    return retry(lambda: locate().click())


def fill(driver, fields):
    """Types each value into the field its CSS selector names, cleared first (see `retry`)."""

    def type_all():
        for css, value in fields.items():
            field = one(driver, css)
            field.clear()
            field.send_keys(value)

    retry(type_all)


def all_of(driver, css):
    return driver.find_elements(By.CSS_SELECTOR, css)


def sign_in(driver, key=None, secret=None, token=None):
    driver.get(BASE + "/console/")
    wait(driver, EC.presence_of_element_located((By.ID, "access_key_id")))
    fill(driver, {"#token": token} if token else {"#access_key_id": key, "#secret_access_key": secret})
    click(lambda: one(driver, ".sign-in button[type=submit]"))


def signed_in_as(driver, name):
    try:
        wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, ".who strong")))
        return one(driver, ".who strong").text == name
    except TimeoutException:
        return False


def sign_out(driver):
    one(driver, ".who button").click()
    wait(driver, EC.presence_of_element_located((By.ID, "access_key_id")))


def confirm_dialog(driver, screenshot=None):
    """Confirms the console's dialog and waits until the page it was on is gone (the confirmed
    form's answer has loaded); returns its message. Without that wait, a success notice still
    shown from the previous action satisfies the next check before the POST has even run."""
    wait(driver, EC.visibility_of_element_located((By.CSS_SELECTOR, "dialog.confirm")))
    message = retry(lambda: one(driver, "dialog.confirm .confirm-message").text)
    if screenshot:
        shot(driver, screenshot, full_page=False)
    page = driver.find_element(By.TAG_NAME, "html")
    click(lambda: one(driver, "dialog.confirm .confirm-ok"))
    settled(driver, page)
    return message


def fetch_post(driver, path, fields):
    """A POST from the page itself (same origin, with the session cookie): what a forged button
    or a script injected into the page could send. Returns (status, body)."""
    result = driver.execute_async_script(
        """
        const [path, fields, done] = arguments;
        fetch(path, {method: "POST", body: new URLSearchParams(fields), credentials: "same-origin", redirect: "manual"})
          .then(async r => done([r.status, await r.text()]), e => done([0, String(e)]));
        """,
        path, fields,
    )
    return result[0], result[1]


def csrf_of(driver):
    return one(driver, ".who input[name=csrf]").get_attribute("value")


def card(driver, digest):
    return one(driver, f'article.image-card[data-digest="{digest}"]')


# ---------------------------------------------------------------- the checks


def check_sign_in(driver):
    driver.get(BASE + f"/console/repositories/{WEB}")
    wait(driver, EC.presence_of_element_located((By.ID, "access_key_id")))
    expect("an unsigned visitor is sent to the sign-in page, keeping where it was going",
           urllib.parse.parse_qs(urllib.parse.urlparse(driver.current_url).query).get("next"), [f"/console/repositories/{WEB}"])
    shot(driver, "01-sign-in")
    one(driver, "#access_key_id").send_keys(ROOT[0])
    one(driver, "#secret_access_key").send_keys("not-the-secret")
    one(driver, ".sign-in button[type=submit]").click()
    error = wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, ".notice.error"))).text
    expect("a wrong secret is refused with a message", "not valid" in error, True)
    expect("the form keeps where the visitor was going", one(driver, "input[name=next]").get_attribute("value"),
           f"/console/repositories/{WEB}")
    one(driver, "#access_key_id").clear()
    one(driver, "#access_key_id").send_keys(ROOT[0])
    one(driver, "#secret_access_key").send_keys(ROOT[1])
    one(driver, ".sign-in button[type=submit]").click()
    expect("root signs in with an access key", signed_in_as(driver, "root"), True)
    expect("and lands where it was going", driver.current_url, BASE + f"/console/repositories/{WEB}")
    cookie = driver.get_cookie("berth_console")
    expect("the session cookie is HttpOnly", cookie.get("httpOnly"), True)
    expect("the session cookie is SameSite=Strict", cookie.get("sameSite"), "Strict")
    expect("the session cookie is not Secure over plain HTTP", cookie.get("secure"), False)
    expect("the session cookie is scoped to /console", cookie.get("path"), "/console")
    lifetime = cookie.get("expiry", 0) - __import__("time").time()
    expect("the session expires in 12 hours", 11.9 * 3600 < lifetime <= 12 * 3600 + 5, True)


def check_repositories(driver):
    driver.get(BASE + "/console/repositories")
    rows = {r.get_attribute("data-repository"): r for r in all_of(driver, "#repositories tbody tr")}
    expect("both repositories are listed", sorted(rows), sorted([LC, WEB]))
    web = rows[WEB].text
    # The index, and the two per-platform images docker manifest create combined, which keep their
    # own tags (image_one_tag, image_two); the referrers hang below the index.
    expect(f"{WEB} counts three images (the index and its two tagged platform images)", rows[WEB].find_elements(By.TAG_NAME, "td")[0].text.split()[0], "3")
    expect(f"{WEB} has the repository-policy badge", "repository policy" in web, True)
    expect(f"{WEB} has the lifecycle-policy badge", "lifecycle policy" in web, True)
    badges = lambda row: [b.text for b in row.find_elements(By.CSS_SELECTOR, ".badge")]
    expect(f"{WEB} shows the cache rule's upstream", "cache: public.ecr.aws" in badges(rows[WEB]), True)
    expect(f"{LC} has only the cache-rule badge (a preview is not a policy)", badges(rows[LC]), ["cache: public.ecr.aws"])
    shot(driver, "02-repositories")
    search = one(driver, "#q")
    search.send_keys("lifecycle")
    one(driver, ".search button").click()
    # The results are a new page: wait for it, not for the old one's rows.
    wait(driver, lambda d: "q=lifecycle" in d.current_url and d.execute_script("return document.readyState") == "complete")
    found = [r.get_attribute("data-repository") for r in all_of(driver, "#repositories tbody tr")]
    expect("searching 'lifecycle' finds only that repository", found, [LC])
    driver.get(BASE + "/console/repositories/" + WEB)
    cache = one(driver, ".badge.cache")
    expect(f"{WEB}'s page shows the cache-rule badge naming the upstream", cache.text, "cache: public.ecr.aws")
    expect("its title names the rule", "rule console" in cache.get_attribute("title"), True)
    # Under the rule, console/ is a cache namespace where pushes, and so the console's add-tag,
    # are refused as on ECR: the rule goes before the actions are tried.
    subprocess.run(["aws", "--endpoint-url", f"http://{REG}", "ecr", "delete-pull-through-cache-rule",
                    "--ecr-repository-prefix", "console"], check=True, capture_output=True)


def check_platform_matrix(driver):
    index = load("index.json")
    web = load("web.json")
    driver.get(BASE + f"/console/repositories/{WEB}")
    image = card(driver, web["index"])
    rows = image.find_elements(By.CSS_SELECTOR, "table[data-platform-matrix] tbody tr")
    seen = {
        (r.get_attribute("data-os"), r.get_attribute("data-architecture"), r.get_attribute("data-variant")):
            (r.get_attribute("data-digest"), r.get_attribute("data-size"), r.get_attribute("data-layers"))
        for r in rows
    }
    wanted = {}
    for entry in index["manifests"]:
        platform = entry["platform"]
        child = load(f"{entry['digest']}.json")
        size = child["config"]["size"] + sum(layer["size"] for layer in child["layers"])
        wanted[(platform["os"], platform["architecture"], platform.get("variant") or "—")] = (
            entry["digest"], str(size), str(len(child["layers"])))
    expect("the platform matrix equals docker manifest inspect (os/arch/variant -> digest, size, layers)", seen, wanted)
    expect("the index is tagged latest", [t.get_attribute("data-tag") for t in image.find_elements(By.CSS_SELECTOR, ".tag[data-tag]")], ["latest"])
    groups = {g.get_attribute("data-artifact-type"): g.find_element(By.TAG_NAME, "h4").text
              for g in image.find_elements(By.CSS_SELECTOR, ".referrer-group")}
    expect("referrers are grouped under their subject by artifact type",
           {t: label.split()[0] for t, label in groups.items()},
           {"application/vnd.dev.cosign.artifact.sig.v1+json": "Signatures", "application/spdx+json": "SBOMs"})
    click(lambda: one(driver, f'article.image-card[data-digest="{web["index"]}"] details.pull summary'))
    commands = [c.text for c in image.find_elements(By.CSS_SELECTOR, ".pull code")]
    expect("pull commands by tag and by digest name the registry host",
           commands, [f"docker pull {REG}/{WEB}:latest", f"docker pull {REG}/{WEB}@{web['index']}"])
    expect("root sees the delete button", len(image.find_elements(By.CSS_SELECTOR, "button.delete-image")), 1)
    shot(driver, "03-repository")


def check_image_page(driver):
    index = load("index.json")
    amd64 = next(m for m in index["manifests"] if m["platform"]["architecture"] == "amd64")
    expected = load(f"{amd64['digest']}.json")
    driver.get(BASE + f"/console/repositories/{WEB}")
    link = one(driver, f'table[data-platform-matrix] tr[data-digest="{amd64["digest"]}"] a')
    link.click()
    wait(driver, EC.presence_of_element_located((By.ID, "config-heading")))
    facts = {dt.text: dd.text for dt, dd in zip(all_of(driver, "#config-heading ~ dl.facts dt"), all_of(driver, "#config-heading ~ dl.facts dd"))}
    expect("the config's platform", facts.get("Platform"), "linux/amd64")
    expect("the config's command", facts.get("Command"), "/bin/sh")
    env = [r.text for r in all_of(driver, "#env tbody tr")]
    expect("the config's environment", any(r.startswith("PATH ") for r in env), True)
    labels = [r.find_element(By.TAG_NAME, "th").text for r in all_of(driver, "#labels tbody tr")]
    expect("the config's labels", labels, ["e2e.nonce"])
    history = [li.find_element(By.TAG_NAME, "code").text for li in all_of(driver, "ol.history li")]
    expect("the config's history", history, ["multiarch-flow mkimg"])
    layer_sizes = [int(r.get_attribute("data-size")) for r in all_of(driver, "#layers tbody tr[data-size]")]
    expect("the layers and their sizes equal docker manifest inspect", layer_sizes, [l["size"] for l in expected["layers"]])
    raw = one(driver, "#raw-manifest pre")
    expect("the raw manifest is hidden until asked for", raw.is_displayed(), False)
    one(driver, "#raw-manifest summary").click()
    expect("the raw JSON toggle shows it", raw.is_displayed(), True)
    expect("the raw manifest is the manifest docker inspects", json.loads(raw.text), expected)
    shot(driver, "04-image")


def check_lifecycle(driver):
    preview = load("preview.json")
    driver.get(BASE + f"/console/repositories/{LC}/-/lifecycle")
    rows = all_of(driver, "#preview tbody tr")
    for verdict, action in (("expire", "EXPIRE"), ("archive", "TRANSITION")):
        marked = sorted((r.get_attribute("data-digest"), int(r.get_attribute("data-rule")))
                        for r in rows if r.get_attribute("data-verdict") == verdict)
        wanted = sorted((p["imageDigest"], p["appliedRulePriority"]) for p in preview["previewResults"]
                        if p["action"]["type"] == action)
        expect(f"the preview marks the same images (and rules) to {verdict} as aws ecr get-lifecycle-policy-preview",
               marked, wanted)
        expect(f"the preview has images to {verdict} (the test means something)", len(wanted) >= 1, True)
    protected = [r.text for r in rows if r.get_attribute("data-verdict") == "protected"]
    expect("a child a rule selected is kept because its index still lists it",
           any("rule 1 selects it, but index" in t for t in protected), True)
    expect("untagged children are kept with their index", any("Kept with index" in t for t in protected), True)
    expect("the rules are listed", len(all_of(driver, "#rules tbody tr")), 2)
    shot(driver, "05-lifecycle")
    driver.get(BASE + f"/console/repositories/{WEB}/-/lifecycle")
    expect(f"{WEB}'s policy in force expires nothing (platforms and referrers are not orphans)",
           [r.get_attribute("data-verdict") for r in all_of(driver, "#preview tbody tr") if r.get_attribute("data-verdict") == "expire"], [])


def check_permissions(driver):
    driver.get(BASE + f"/console/repositories/{WEB}/-/permissions")
    columns = [th.get_attribute("textContent").strip() for th in all_of(driver, "#permissions thead th")][1:]
    table = {}
    for row in all_of(driver, "#permissions tbody tr"):
        cells = [c.find_element(By.CSS_SELECTOR, ".decision").text for c in row.find_elements(By.TAG_NAME, "td")]
        table[row.get_attribute("data-user")] = dict(zip(columns, cells))
    expect("reader may pull", table.get("reader", {}).get("Pull"), "✓ allowed")
    expect("reader may not delete images (the repository policy)", table.get("reader", {}).get("Delete images"), "✗ denied")
    expect("root may do everything", set(table.get("root", {}).values()), {"✓ allowed"})
    why = one(driver, '#permissions tr[data-user="reader"] .decision.deny + .why').text
    allowed_why = one(driver, '#permissions tr[data-user="reader"] .decision.allow + .why').text
    expect("an allowed cell names the identity policy that allowed it",
           "AmazonEC2ContainerRegistryFullAccess" in allowed_why and "ecr:BatchGetImage" in allowed_why, True)
    # IAM's own wording, as the aws CLI prints it: a repository policy is a resource-based policy.
    expect("the reason names the action and the policy", "ecr:BatchDeleteImage" in why and "explicit deny in a resource-based policy" in why, True)
    sids = [r.find_elements(By.TAG_NAME, "td")[0].text for r in all_of(driver, "#statements tbody tr")]
    expect("the policy's statements are shown", sids, ["ReaderMayNotDelete"])
    shot(driver, "06-permissions")


def check_admin(driver):
    driver.get(BASE + "/console/admin")
    users = [r.get_attribute("data-user") for r in all_of(driver, "#users tbody tr")]
    expect("the admin page lists the users", sorted(users), ["reader", "root"])
    fill(driver, {"#new-user": "temp-user"})
    click(lambda: one(driver, ".inline-form button"))
    created = wait(driver, EC.presence_of_element_located((By.ID, "created-user")))
    key, secret = [c.text for c in created.find_elements(By.CSS_SELECTOR, ".copy-line code")]
    auth = base64.b64encode(f"{key}:{secret}".encode()).decode()
    expect("the new user's keys work on /v2/", http("GET", "/v2/", headers={"Authorization": f"Basic {auth}"})[0], 200)
    ecr_env = {**os.environ, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
    describe = ["aws", "--endpoint-url", f"http://{REG}", "ecr", "describe-repositories"]
    row = f'#users tr[data-user="temp-user"]'
    expect("the new key is shown Active", retry(lambda: one(driver, row + " .key-status").text), "Active")

    click(lambda: one(driver, row + " button.key-toggle"))
    message = confirm_dialog(driver, screenshot="07-admin-deactivate")
    expect("deactivating a key asks first", message.startswith("Deactivate the access key of temp-user?"), True)
    wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, ".notice.success")))
    expect("the key is shown Inactive", retry(lambda: one(driver, row + " .key-status").text), "Inactive")
    expect("a deactivated key is refused on /v2/", http("GET", "/v2/", headers={"Authorization": f"Basic {auth}"})[0], 401)
    refused = subprocess.run(describe, env=ecr_env, capture_output=True, text=True)
    expect("and by the aws CLI (SigV4): UnrecognizedClientException",
           refused.returncode != 0 and "UnrecognizedClientException" in refused.stderr, True)
    expect("berth user list agrees", subprocess.run(
        [os.environ["BERTH_BIN"], "user", "list", "--data-dir", os.environ["DATA_DIR"]], capture_output=True, text=True
    ).stdout.count('"status":"Inactive"'), 1)

    # Activating asks nothing: wait for the answer's page, as confirm_dialog does, since the
    # deactivation's success notice is still shown until then.
    page = driver.find_element(By.TAG_NAME, "html")
    click(lambda: one(driver, row + " button.key-toggle"))
    settled(driver, page)
    wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, ".notice.success")))
    expect("activated again, the key is shown Active", retry(lambda: one(driver, row + " .key-status").text), "Active")
    expect("and works on /v2/ again", http("GET", "/v2/", headers={"Authorization": f"Basic {auth}"})[0], 200)
    expect("and with the aws CLI", subprocess.run(describe, env=ecr_env, capture_output=True).returncode, 0)

    click(lambda: one(driver, row + " button.delete-user"))
    message = confirm_dialog(driver)
    expect("deleting a user asks first", message.startswith("Delete user temp-user?"), True)
    wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, ".notice.success")))
    expect("the user is gone", [r.get_attribute("data-user") for r in all_of(driver, "#users tbody tr")], ["reader", "root"])
    expect("its key no longer works", http("GET", "/v2/", headers={"Authorization": f"Basic {auth}"})[0], 401)
    maintenance = one(driver, "#maintenance-heading ~ dl").text
    expect("maintenance shows the lifecycle schedule", "Every 1 h" in maintenance, True)
    expect("and the last lifecycle run (the policy put on a repository ran)", "Last run" in maintenance, True)
    shot(driver, "07-admin")


def check_actions(driver):
    web = load("web.json")
    index = load("index.json")
    child = index["manifests"][0]["digest"]
    page = f"/console/repositories/{WEB}"
    driver.get(BASE + page)

    def add_stable():
        form = card(driver, web["index"]).find_element(By.CSS_SELECTOR, "form.add-tag")
        field = form.find_element(By.NAME, "tag")
        field.clear()
        field.send_keys("stable")
        form.find_element(By.CSS_SELECTOR, "button").click()

    retry(add_stable)
    message = confirm_dialog(driver, screenshot="08-confirm")
    expect("the dialog names the tag being added", message.startswith("Add tag stable to sha256:"), True)
    wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, ".notice.success")))
    tags = retry(lambda: [
        t.get_attribute("data-tag") for t in card(driver, web["index"]).find_elements(By.CSS_SELECTOR, ".tag[data-tag]")
    ])
    expect("add tag: the chip appears", tags, ["latest", "stable"])
    expect("add tag: /v2/ lists it", "stable" in (v2_tags(WEB) or []), True)

    click(lambda: card(driver, web["index"]).find_element(By.CSS_SELECTOR, '.tag[data-tag="stable"] button'))
    message = confirm_dialog(driver)
    expect("remove tag asks first and says the image stays", "The image stays" in message, True)
    wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, ".notice.success")))
    expect("remove tag: /v2/ no longer lists it", "stable" in (v2_tags(WEB) or []), False)
    expect("remove tag: the image stays", registry_has(WEB, web["index"]), True)

    click(lambda: one(driver, "#toggle-mutability"))
    confirm_dialog(driver)
    wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, ".notice.success")))
    expect("tag immutability on: the badge shows", "immutable tags" in retry(lambda: one(driver, ".page-head").text), True)
    expect("and the tags carry a lock", retry(lambda: len(card(driver, web["index"]).find_elements(By.CSS_SELECTOR, ".lock"))), 1)
    click(lambda: one(driver, "#toggle-mutability"))
    confirm_dialog(driver)
    wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, ".notice.success")))
    expect("tag immutability off again", "immutable tags" in retry(lambda: one(driver, ".page-head").text), False)

    token = csrf_of(driver)
    status, body = fetch_post(driver, page + "/-/delete-image", {"csrf": token, "digest": child, "confirmed": "yes"})
    expect("deleting a platform an index lists is refused (409)", status, 409)
    expect("with the service's reason", "referenced by index" in body and web["index"] in body, True)
    expect("and the platform manifest stays", registry_has(WEB, child), True)

    cookie = f"berth_console={driver.get_cookie('berth_console')['value']}"
    status, body = http("POST", page + "/-/delete-image", {"csrf": token, "digest": web["index"]}, {"Cookie": cookie})
    expect("without JavaScript a delete first shows a confirmation page", (status, "Delete image?" in body), (200, True))
    status, _ = http("POST", page + "/-/delete-image", {"digest": web["index"], "confirmed": "yes"}, {"Cookie": cookie})
    expect("a POST without a CSRF token is refused (403)", status, 403)
    status, _ = http("POST", page + "/-/delete-image", {"csrf": "forged", "digest": web["index"], "confirmed": "yes"}, {"Cookie": cookie})
    expect("a POST with a wrong CSRF token is refused (403)", status, 403)
    status, _ = http("POST", page + "/-/delete-image", {"csrf": token, "digest": web["index"], "confirmed": "yes"},
                     {"Cookie": cookie, "Origin": "http://evil.example"})
    expect("a POST from another origin is refused even with the token (403)", status, 403)
    status, _ = http("POST", page + "/-/delete-image", {"csrf": token, "digest": web["index"], "confirmed": "yes"},
                     {"Cookie": cookie, "Sec-Fetch-Site": "cross-site"})
    expect("a POST a browser marks cross-site is refused (403)", status, 403)
    expect("after all that the index is still there", registry_has(WEB, web["index"]), True)

    lc = load("lc.json")
    driver.get(BASE + f"/console/repositories/{LC}")
    click(lambda: card(driver, lc["u1"]).find_element(By.CSS_SELECTOR, "button.delete-image"))
    confirm_dialog(driver)
    wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, ".notice.success")))
    expect("delete image with confirmation: /v2/ no longer serves it", registry_has(LC, lc["u1"]), False)
    expect("and its card is gone", len(all_of(driver, f'article.image-card[data-digest="{lc["u1"]}"]')), 0)


def check_read_only(driver):
    web = load("web.json")
    sign_in(driver, *READER)
    expect("reader signs in", signed_in_as(driver, "reader"), True)
    expect("reader sees no Admin link", [a.text for a in all_of(driver, ".topbar nav a")], ["Repositories"])
    page = f"/console/repositories/{WEB}"
    driver.get(BASE + page)
    expect("reader sees the images (the index and its two tagged platform images)", len(all_of(driver, "article.image-card")), 3)
    expect("reader (denied ecr:BatchDeleteImage) sees no delete button", len(all_of(driver, "button.delete-image")), 0)
    expect("nor tag-remove buttons", len(all_of(driver, ".chip-remove")), 0)
    shot(driver, "09-read-only")
    token = csrf_of(driver)
    for label, fields in [("with a valid CSRF token", {"csrf": token}), ("without a CSRF token", {})]:
        status, _ = fetch_post(driver, page + "/-/delete-image", {**fields, "digest": web["index"], "confirmed": "yes"})
        expect(f"reader's forged delete POST {label} is refused (403)", status, 403)
        status, _ = fetch_post(driver, page + "/-/remove-tag", {**fields, "digest": web["index"], "tag": "latest", "confirmed": "yes"})
        expect(f"reader's forged remove-tag POST {label} is refused (403)", status, 403)
    expect("nothing was deleted", registry_has(WEB, web["index"]) and "latest" in (v2_tags(WEB) or []), True)
    driver.get(BASE + "/console/admin")
    expect("reader may not open the admin page", "Not allowed" in retry(lambda: one(driver, "main h1").text), True)
    sign_out(driver)
    driver.get(BASE + page)
    expect("after signing out the pages need a sign-in again", "/console/sign-in" in driver.current_url, True)


def check_token_sign_in(driver):
    sign_in(driver, token=ROOT_TOKEN)
    expect("root signs in with a registry token", signed_in_as(driver, "root"), True)
    sign_out(driver)


def main():
    os.makedirs(ARTIFACTS, exist_ok=True)
    driver, profile = browser()
    try:
        for check in [check_sign_in, check_repositories, check_platform_matrix, check_image_page, check_lifecycle,
                      check_permissions, check_admin, check_actions]:
            try:
                check(driver)
            except Exception as error:  # a broken page must not hide the checks after it
                bad(f"{check.__name__}: {type(error).__name__}: {error}".splitlines()[0])
                shot(driver, f"failed-{check.__name__}")
        try:
            sign_out(driver)
            check_read_only(driver)
            check_token_sign_in(driver)
        except Exception as error:
            bad(f"read-only user: {type(error).__name__}: {error}".splitlines()[0])
            shot(driver, "failed-read-only")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
