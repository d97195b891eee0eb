"""The cross-field checks of outbound.services (policy.service_checks), each through decode_policy or
load_policy_file: the exact path and what the message says, and the bundles they must let through."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from policy.index import PolicyIndex
from policy.load import PolicyError, Problem, decode_policy, encode_policy, load_policy_file
from policy.model import Policy
from tests.policy.strategies import service_policies

WEB = "outbound.services[0]"
API = "outbound.services[1]"


def web(
    extra: str = "",
    *,
    addresses: str = "[10.96.0.10]",
    ports: str = "[{port: 80, target_port: 8080}]",
    endpoints: str = "[{address: 10.1.0.5}]",
    name: str = "web",
) -> str:
    """One service in YAML flow style; ``extra`` adds fields."""
    fields = f"name: {name}, addresses: {addresses}, ports: {ports}, endpoints: {endpoints}"
    return "{" + fields + (f", {extra}" if extra else "") + "}"


def api(extra: str = "", **kwargs: str) -> str:
    defaults = {
        "name": "api",
        "addresses": "[10.96.0.11]",
        "ports": "[{port: 80}]",
        "endpoints": "[{address: 10.1.0.7}]",
    }
    return web(extra, **(defaults | kwargs))


def bundle(*services: str, outbound: str = "") -> str:
    return f"outbound: {{{outbound}services: [{', '.join(services)}]}}\n"


def problems_of(document: str) -> list[Problem]:
    with pytest.raises(PolicyError) as caught:
        decode_policy(document.encode(), "yaml", source="test.yaml")
    return list(caught.value.problems)


CASES = [
    # addresses
    (bundle(web(addresses="[10.96.0.300]")), f"{WEB}.addresses[0]", "'10.96.0.300' is not an IP address: Octet 300"),
    (bundle(web(addresses="[10.96.0.0/16]")), f"{WEB}.addresses[0]", "is a network, but a service address is one"),
    (bundle(web(addresses="[10.96.0.10/32]")), f"{WEB}.addresses[0]", "write the address alone, 10.96.0.10"),
    (bundle(web(addresses='["fd00::10/128"]')), f"{WEB}.addresses[0]", "write the address alone, fd00::10"),
    (bundle(web(addresses='["::ffff:10.96.0.10"]')), f"{WEB}.addresses[0]", "IPv4-mapped IPv6 address"),
    (bundle(web(addresses='["fe80::1%eth0"]')), f"{WEB}.addresses[0]", "has a zone (%eth0)"),
    (
        bundle(web(addresses="[10.96.0.10, 10.96.0.10]")),
        f"{WEB}.addresses[1]",
        f"10.96.0.10 is listed twice (also {WEB}.addresses[0]); list it once",
    ),
    (
        bundle(web(addresses='["fd00::10", "FD00:0::10"]')),
        f"{WEB}.addresses[1]",
        f"fd00::10 is listed twice (also {WEB}.addresses[0])",
    ),
    (
        bundle(web(), api(addresses="[10.96.0.10]")),
        f"{API}.addresses[0]",
        f"10.96.0.10 on port 80 already belongs to service 'web' ({WEB}.addresses[0]); an address:port belongs "
        "to one service only",
    ),
    (
        bundle(
            web(ports="[{port: 80}, {port: 443}]"), api(addresses="[10.96.0.10]", ports="[{port: 443}, {port: 80}]")
        ),
        f"{API}.addresses[0]",
        "10.96.0.10 on ports 443, 80 already belongs to service 'web'",
    ),
    (
        bundle(web(), outbound="exclude_cidrs: [10.0.0.0/8], "),
        f"{WEB}.addresses[0]",
        "10.96.0.10 lies in outbound.exclude_cidrs[0] (10.0.0.0/8), so mesh-init leaves connections to it "
        "unintercepted",
    ),
    # ports
    (
        bundle(web(), outbound="exclude_ports: [22, 80], "),
        f"{WEB}.ports[0].port",
        "port 80 is also in outbound.exclude_ports[1], so mesh-init leaves connections to it unintercepted",
    ),
    (
        bundle(web(ports="[{port: 80}, {port: 80, target_port: 8080}]")),
        f"{WEB}.ports[1].port",
        f"port 80 is already listed by {WEB}.ports[0]; list it once",
    ),
    (
        bundle(web(ports="[{port: 80, name: http}, {port: 8080, name: http}]")),
        f"{WEB}.ports[1].name",
        f"port name 'http' is already used by {WEB}.ports[0]",
    ),
    # endpoints
    (
        bundle(web(endpoints='[{address: "fd00::5::80"}]')),
        f"{WEB}.endpoints[0].address",
        "an IPv6 address with a port is written [IPv6]:PORT",
    ),
    (
        bundle(web(endpoints='[{address: "db:5432"}]')),
        f"{WEB}.endpoints[0].address",
        "'db:5432' is not an endpoint address (IP, IPv4:PORT or [IPv6]:PORT; host names are not resolved)",
    ),
    (
        bundle(web(endpoints='[{address: "10.1.0.5:0"}]')),
        f"{WEB}.endpoints[0].address",
        "the port must be a number from 1 to 65535, got '0'",
    ),
    (
        bundle(web(ports="[{port: 80}, {port: 443}]", endpoints='[{address: "10.1.0.5:8080"}]')),
        f"{WEB}.endpoints[0].address",
        "'10.1.0.5:8080' names a port, but this service has 2 ports, which the endpoint would serve alike: "
        "write the IP alone (10.1.0.5) and give each service port its target_port",
    ),
    (
        bundle(web(endpoints='[{address: 10.1.0.5}, {address: "10.1.0.5:8080", weight: 2}]')),
        f"{WEB}.endpoints[1].address",
        f"10.1.0.5:8080 is already the endpoint {WEB}.endpoints[0]; list it once (with the sum of the two weights",
    ),
    (
        bundle(web(endpoints='[{address: "fd00::5"}, {address: "FD00:0::5"}]')),
        f"{WEB}.endpoints[1].address",
        f"[fd00::5]:8080 is already the endpoint {WEB}.endpoints[0]",
    ),
    (
        bundle(web(ports="[{port: 80}, {port: 443}]", endpoints="[{address: 10.1.0.5}, {address: 10.1.0.5}]")),
        f"{WEB}.endpoints[1].address",
        f"10.1.0.5 is already the endpoint {WEB}.endpoints[0]",
    ),
    (
        bundle(web(ports="[{port: 80}]", endpoints="[{address: 10.96.0.10}]")),
        f"{WEB}.endpoints[0].address",
        f"10.96.0.10:80 is this service's own address ({WEB}.addresses[0]) and port: its traffic would be sent "
        "back to the service, a loop",
    ),
    (
        bundle(web(endpoints='[{address: "10.96.0.10:80"}]')),
        f"{WEB}.endpoints[0].address",
        "10.96.0.10:80 is this service's own address",
    ),
    (
        bundle(web(endpoints='[{address: 10.1.0.5, identity: "spiffe://td"}]')),
        f"{WEB}.endpoints[0].identity",
        "'spiffe://td' is not an identity pattern: a SPIFFE ID of a workload has a path",
    ),
    (
        bundle(
            web(endpoints='[{address: 10.1.0.5, identity: "spiffe://td/ns/a/sa/web"}]'),
            api(ports="[{port: 80, target_port: 8080}]", endpoints='[{address: 10.1.0.5, identity: "spiffe://td/*"}]'),
        ),
        f"{API}.endpoints[0].identity",
        f"10.1.0.5:8080 is also an endpoint that must prove 'spiffe://td/ns/a/sa/web' ({WEB}.endpoints[0].identity); "
        "an address has one identity",
    ),
    # names
    (
        bundle(web(), api(name="web")),
        f"{API}.name",
        f"service 'web' is already defined by {WEB}; a name is one service's only",
    ),
    (
        bundle(web("routes: [{name: api, paths: [/api/*]}, {name: api, paths: [/v2/*]}]")),
        f"{WEB}.routes[1].name",
        f"route name 'api' is already used by {WEB}.routes[0]",
    ),
    (
        bundle(web("routes: [{name: default}]")),
        f"{WEB}.routes[0].name",
        "'default' is the route_name of the requests no route matches",
    ),
    # timeouts
    (
        bundle(web("timeout: 0s")),
        f"{WEB}.timeout",
        "must be longer than zero, got 0s: a zero timeout would answer every request 504 at once",
    ),
    (bundle(web("routes: [{name: a, timeout: 0ms}]")), f"{WEB}.routes[0].timeout", "must be longer than zero"),
    # retries
    (
        bundle(web("retry: {per_try_timeout: 0s}")),
        f"{WEB}.retry.per_try_timeout",
        "must be longer than zero, got 0s: a zero per_try_timeout would time out every try at once",
    ),
    (
        bundle(web("routes: [{name: a, timeout: 1s, retry: {per_try_timeout: 1000ms}}]")),
        f"{WEB}.routes[0].retry.per_try_timeout",
        f"1000ms is not shorter than the route's timeout (1s at {WEB}.routes[0].timeout): no try could time out",
    ),
    (
        bundle(web("timeout: 2s, routes: [{name: a, retry: {per_try_timeout: 3s}}]")),
        f"{WEB}.routes[0].retry.per_try_timeout",
        f"3s is not shorter than the service's timeout (2s at {WEB}.timeout)",
    ),
    (
        bundle(web("timeout: 2s, retry: {per_try_timeout: 5s}")),
        f"{WEB}.retry.per_try_timeout",
        f"5s is not shorter than the service's timeout (2s at {WEB}.timeout)",
    ),
    (
        bundle(web("retry: {per_try_timeout: 2s}, routes: [{name: a, timeout: 1s}]")),
        f"{WEB}.routes[0].timeout",
        f"1s is not longer than the per-try timeout of the service's retry, which this route uses (2s at "
        f"{WEB}.retry.per_try_timeout)",
    ),
    (
        bundle(web("retry: {conditions: [connect-failure, reset, connect-failure]}")),
        f"{WEB}.retry.conditions[2]",
        f"connect-failure is already listed by {WEB}.retry.conditions[0]; list it once",
    ),
    (
        bundle(web("retry: {statuses: [502, 503, 503]}")),
        f"{WEB}.retry.statuses[2]",
        f"503 is already listed by {WEB}.retry.statuses[1]",
    ),
    (
        bundle(web("routes: [{name: a, retry: {grpc_statuses: [unavailable, unavailable]}}]")),
        f"{WEB}.routes[0].retry.grpc_statuses[1]",
        f"unavailable is already listed by {WEB}.routes[0].retry.grpc_statuses[0]",
    ),
    (
        bundle(web("retry: {max_attempts: 1, statuses: [503]}")),
        f"{WEB}.retry.max_attempts",
        "max_attempts 1 never retries, so 503 could never be retried: raise max_attempts, or remove them",
    ),
    (
        bundle(web("retry: {max_attempts: 1, conditions: [connect-failure, reset], grpc_statuses: [internal]}")),
        f"{WEB}.retry.max_attempts",
        "max_attempts 1 never retries, so reset, internal could never be retried",
    ),
    (
        bundle(web("retry: {max_attempts: 1, conditions: [per-try-timeout], per_try_timeout: 1s}")),
        f"{WEB}.retry.max_attempts",
        "so per-try-timeout could never be retried",
    ),
    (
        bundle(web("retry: {conditions: [connect-failure, per-try-timeout]}")),
        f"{WEB}.retry.conditions[1]",
        "but no per_try_timeout is set: set one (shorter than the route's timeout), or remove the condition",
    ),
    (
        bundle(web("retry: {conditions: [per-try-timeout], per_try_timeout: null}")),
        f"{WEB}.retry.conditions[0]",
        "no per_try_timeout is set",
    ),
    # outlier detection
    (
        bundle(web("outlier_detection: {base_ejection: 2m, max_ejection: 1m}")),
        f"{WEB}.outlier_detection.base_ejection",
        "base_ejection 2m is longer than max_ejection 1m, the longest an ejection may last",
    ),
    (
        bundle(web("outlier_detection: {max_ejection: 500ms}")),
        f"{WEB}.outlier_detection.max_ejection",
        "base_ejection 1s is longer than max_ejection 500ms",
    ),
    (
        bundle(web("outlier_detection: {base_ejection: 90s}")),
        f"{WEB}.outlier_detection.base_ejection",
        "base_ejection 90s is longer than max_ejection 1m",
    ),
]


@pytest.mark.parametrize(("document", "path", "message"), CASES)
def test_each_check_names_the_field_and_says_why(document: str, path: str, message: str) -> None:
    problems = problems_of(document)
    assert [problem.path for problem in problems] == [path], problems
    assert message in problems[0].message


ZERO_DURATIONS = [
    ("retry_budget", "ttl", "count no request towards the ratio"),
    ("balancer", "default_rtt", "look infinitely fast"),
    ("balancer", "decay", "forget every latency at once"),
    ("outlier_detection", "base_ejection", "to never eject, set max_ejected_percent: 0"),
    ("outlier_detection", "max_ejection", "to never eject, set max_ejected_percent: 0"),
    ("queue", "failfast", "answer 503 the moment no endpoint is ready"),
]


@pytest.mark.parametrize(("parent", "field", "effect"), ZERO_DURATIONS)
def test_zero_durations_that_mean_nothing_are_refused(parent: str, field: str, effect: str) -> None:
    zero = f"{parent}: {{{field}: 0s"
    if field == "max_ejection":
        zero += ", base_ejection: 0s"  # else base_ejection (1s by default) is also longer than it
    problems = problems_of(bundle(web(zero + "}")))
    assert f"{WEB}.{parent}.{field}" in [problem.path for problem in problems]
    message = next(problem.message for problem in problems if problem.path == f"{WEB}.{parent}.{field}")
    assert message.startswith(f"must be longer than zero, got 0s: a zero {field} would ")
    assert effect in message


def test_every_problem_is_reported_at_once_in_document_order() -> None:
    document = bundle(
        web(
            "timeout: 0s, routes: [{name: default}]",
            addresses="[10.96.0.10, 10.96.0.10]",
            endpoints="[{address: 10.1.0.5, weight: 0}, {address: 10.1.0.5}]",
        ),
        api(name="web", addresses="[10.96.0.10]"),
    )
    assert [problem.path for problem in problems_of(document)] == [
        f"{WEB}.endpoints[0].weight",  # the type check runs first
        f"{WEB}.addresses[1]",
        f"{WEB}.endpoints[1].address",
        f"{WEB}.routes[0].name",
        f"{WEB}.timeout",
        f"{API}.name",
        f"{API}.addresses[0]",
    ]


def test_values_that_failed_their_type_check_are_skipped() -> None:
    document = bundle(
        web(
            "routes: [{name: Bad}], retry: {statuses: [404, 503], max_attempts: 1}",
            addresses="[10.96.0.10, 7]",
            ports="[{port: 0}, {port: 80, target_port: true}]",
            endpoints="[{address: 1}, {address: 10.1.0.5, identity: 5}]",
        )
    )
    assert [problem.path for problem in problems_of(document)] == [
        f"{WEB}.addresses[1]",
        f"{WEB}.ports[0].port",
        f"{WEB}.ports[1].target_port",
        f"{WEB}.endpoints[0].address",
        f"{WEB}.endpoints[1].identity",
        f"{WEB}.routes[0].name",
        f"{WEB}.retry.statuses[0]",
        f"{WEB}.retry.max_attempts",  # 503 still listed with max_attempts 1
    ]


def test_load_policy_file_reports_service_problems_with_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        """
[[outbound.services]]
name = "web"
addresses = ["10.96.0.10"]
ports = [{port = 80}, {port = 81}]
endpoints = [{address = "10.1.0.5:8080"}]
""",
        encoding="utf-8",
    )
    with pytest.raises(PolicyError) as caught:
        load_policy_file(path)
    assert str(caught.value) == (
        f"{path}: {WEB}.endpoints[0].address: '10.1.0.5:8080' names a port, but this service has 2 ports, "
        "which the endpoint would serve alike: write the IP alone (10.1.0.5) and give each service port its "
        "target_port"
    )


VALID = """
outbound:
  exclude_ports: [22]
  exclude_cidrs: [169.254.169.254/32, 10.100.0.0/16]
  meshed:
    - {cidr: 10.1.0.0/16, identity: "spiffe://td/ns/shop/*"}
  services:
    - name: web
      addresses: [10.96.0.10, "fd00:96::10"]
      ports:
        - {port: 80, name: http, target_port: 8080}
        - {port: 443, name: https, target_port: 8443}
        - {port: 9090}   # unnamed ports may share the empty name
        - {port: 9091}
      endpoints:
        - {address: 10.1.0.5, identity: "spiffe://td/ns/shop/sa/web", weight: 3}
        - {address: 10.1.0.6, identity: "spiffe://td/ns/shop/*"}
        - {address: "fd00:1::6"}
      timeout: 30s
      retry: {per_try_timeout: 10s, conditions: [connect-failure, per-try-timeout], max_attempts: 2}
      routes:
        - name: api
          paths: ["/api/*"]
          methods: [GET, PUT]
          timeout: 10001ms   # just longer than the inherited per_try_timeout
        - name: writes
          methods: [POST]
          timeout: 5s
          retry: {max_attempts: 1}   # the default conditions with one attempt: retries off
        - name: grpc
          paths: ["/shop.Cart/*"]
          retry:
            conditions: [connect-failure, refused-stream, reset, per-try-timeout]
            statuses: [502, 503]
            grpc_statuses: [unavailable, resource-exhausted]
            per_try_timeout: 29s
            max_attempts: 4
            max_body: 0
      retry_budget: {ratio: 0, min_per_second: 0, ttl: 1s}
      balancer: {default_rtt: 1ms, decay: 1s}
      outlier_detection: {consecutive_failures: 1, base_ejection: 30s, max_ejection: 30s, max_ejected_percent: 0}
      queue: {capacity: 1, failfast: 1ms}
    - name: web-admin   # the same address as web, on another port
      addresses: [10.96.0.10]
      ports: [{port: 8081}]
      endpoints:
        - {address: "10.1.0.5:9000", identity: "spiffe://td/ns/shop/sa/web"}
        - {address: "10.1.0.5:9001"}
    - name: db   # no endpoints: fails fast
      addresses: [10.96.0.20]
      ports: [{port: 5432, name: pg}]
    - name: cart
      addresses: ["fd00:96::20"]
      ports: [{port: 80, target_port: 8080}]
      endpoints:
        - {address: 10.1.0.5, identity: "spiffe://td/ns/shop/sa/web"}   # the same identity as in web
        - {address: "[fd00:1::7]:8080"}
"""


def test_a_bundle_using_every_service_field_decodes() -> None:
    policy = decode_policy(VALID.encode(), "yaml")
    index = PolicyIndex(policy)
    assert [plan.key for plan in index.services.plans] == [
        ("web", 80),
        ("web", 443),
        ("web", 9090),
        ("web", 9091),
        ("web-admin", 8081),
        ("db", 5432),
        ("cart", 80),
    ]
    admin = index.service("10.96.0.10", 8081)
    assert admin is not None and admin.name == "web-admin"
    cart = index.service("fd00:96::20", 80)
    assert cart is not None and [endpoint.address for endpoint in cart.endpoints] == [
        ("10.1.0.5", 8080),
        ("fd00:1::7", 8080),
    ]
    assert decode_policy(encode_policy(policy), "json") == policy


# Bundles of up to four services are slow to draw on a busy machine; the property does not depend on speed.
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(service_policies())
def test_generated_valid_services_decode_without_a_problem(policy: Policy) -> None:
    assert decode_policy(encode_policy(policy), "json") == policy
    index = PolicyIndex(policy)
    for service in policy.outbound.services:
        for address in service.addresses:
            for port in service.ports:
                found = index.service(address, port.port)
                assert found is not None and found.key == (service.name, port.port)
