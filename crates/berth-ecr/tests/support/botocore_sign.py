"""Signs requests with botocore's SigV4Auth, the signer the aws CLI and boto3 use.

stdin: a JSON list of {method, url, region, service, access_key, secret_key, token?, headers, body}.
stdout: a JSON list of {method, path_and_query, headers: [[name, value], ...], body} as an HTTP
client would send them (Host included, as urllib3 adds it from the URL).
"""
import json
import sys
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

signed = []
for case in json.load(sys.stdin):
    credentials = Credentials(case["access_key"], case["secret_key"], case.get("token"))
    request = AWSRequest(
        method=case["method"], url=case["url"], data=case["body"].encode(), headers=case["headers"]
    )
    SigV4Auth(credentials, case["service"], case["region"]).add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    headers = [[name, value] for name, value in prepared.headers.items()]
    if not any(name.lower() == "host" for name, _ in headers):
        headers.append(["Host", parts.netloc])
    path = parts.path or "/"
    signed.append({
        "method": prepared.method,
        "path_and_query": path + ("?" + parts.query if parts.query else ""),
        "headers": headers,
        "body": case["body"],
    })
json.dump(signed, sys.stdout)
