"""policy.services: endpoint and address parsing, compiled service plans (target ports, route matching, retry
and timeout inheritance), the service table's lookups, and PolicyIndex's services and endpoint identities."""

from __future__ import annotations

import re

import pytest

from policy.index import PolicyIndex
from policy.load import decode_policy
from policy.model import RetryCondition
from policy.services import (
    DEFAULT_ROUTE,
    EndpointPlan,
    ServicePlan,
    ServiceTable,
    format_address,
    parse_endpoint,
    parse_ip,
)

POLICY = decode_policy(
    b"""
outbound:
  meshed:
    - {cidr: 10.1.0.0/16, identity: "spiffe://td/ns/shop/*"}
  services:
    - name: web
      addresses: [10.96.0.10, "FD00:0::10"]
      ports:
        - {port: 80, name: http, target_port: 8080}
        - {port: 443}
      endpoints:
        - {address: 10.1.0.5, identity: "spiffe://td/ns/shop/sa/web", weight: 3}
        - {address: 10.1.0.6}
        - {address: "fd00:1::6"}
      timeout: 10s
      retry: {statuses: [503], max_attempts: 2}
      routes:
        - {name: api, paths: ["/api/*"], methods: [GET, PUT], timeout: 2s,
           retry: {conditions: [connect-failure, per-try-timeout], per_try_timeout: 500ms,
                   grpc_statuses: [unavailable, cancelled]}}
        - {name: admin, paths: [/admin]}
    - name: db
      addresses: [10.96.0.20]
      ports: [{port: 5432}]
      endpoints:
        - {address: "10.2.0.7:15432"}
        - {address: "[fd00:2::7]:25432", identity: "spiffe://td/ns/db/sa/pg"}
""",
    "yaml",
)
INDEX = PolicyIndex(POLICY)


def plan(ip: str, port: int) -> ServicePlan:
    found = INDEX.service(ip, port)
    assert found is not None, f"no service at {ip}:{port}"
    return found


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.1.0.5", ("10.1.0.5", None)),
        ("10.1.0.5:8080", ("10.1.0.5", 8080)),
        ("fd00::5", ("fd00::5", None)),
        ("FD00:0:0::5", ("fd00::5", None)),
        ("[fd00::5]:8080", ("fd00::5", 8080)),
        ("[FD00:0::5]:1", ("fd00::5", 1)),
        ("10.1.0.5:65535", ("10.1.0.5", 65535)),
    ],
)
def test_parse_endpoint_gives_the_canonical_ip_and_the_port(text: str, expected: tuple[str, int | None]) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[fd00::5]", "expected [IPv6]:PORT"),
        ("[fd00::5]8080", "expected [IPv6]:PORT"),
        ("fd00::5::8080", "an IPv6 address with a port is written [IPv6]:PORT"),
        ("10.1.0.5:0", "the port must be a number from 1 to 65535, got '0'"),
        ("10.1.0.5:65536", "the port must be a number from 1 to 65535, got '65536'"),
        ("10.1.0.5:", "the port must be a number from 1 to 65535, got ''"),
        ("10.1.0.5:http", "got 'http'"),
        ("10.1.0.5:\u0668\u0660", "the port must be a number"),  # Arabic-Indic digits are digits, not a port
        ("web:80", "Expected 4 octets in 'web'"),
        ("10.1.0.256", "Octet 256 (> 255) not permitted"),
        ("[10.1.0.5]:80", "in '10.1.0.5'"),
    ],
)
def test_parse_endpoint_says_why_a_text_is_no_endpoint(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_endpoint(text)


def test_parse_ip_spells_addresses_canonically_and_says_why_not() -> None:
    assert parse_ip("10.96.0.10") == "10.96.0.10"
    assert parse_ip("FD00:0000::0010") == "fd00::10"
    for text, reason in [
        ("10.96.0.300", "Octet 300 (> 255) not permitted"),
        ("10.96.0.0/16", "Unexpected '/'"),
        ("fd00::1::2", "At most one '::' permitted"),
        ("10.96.0", "Expected 4 octets"),
    ]:
        with pytest.raises(ValueError, match=re.escape(reason)):
            parse_ip(text)


def test_format_address_brackets_ipv6_only() -> None:
    assert format_address("10.1.0.5", 80) == "10.1.0.5:80"
    assert format_address("fd00::5", 80) == "[fd00::5]:80"
    assert parse_endpoint(format_address("fd00::5", 80)) == ("fd00::5", 80)


def test_each_service_port_is_a_plan_keyed_by_name_and_port() -> None:
    http, https = plan("10.96.0.10", 80), plan("10.96.0.10", 443)
    assert (http.key, http.port_name) == (("web", 80), "http")
    assert (https.key, https.port_name) == (("web", 443), "")
    assert [service.key for service in INDEX.services.plans] == [("web", 80), ("web", 443), ("db", 5432)]
    assert repr(http) == "ServicePlan(web:80, 3 endpoints)"


def test_endpoints_get_the_target_port_unless_they_name_one() -> None:
    web_identity = "spiffe://td/ns/shop/sa/web"
    assert plan("10.96.0.10", 80).endpoints == (
        EndpointPlan("10.1.0.5", 8080, web_identity, 3),
        EndpointPlan("10.1.0.6", 8080, None, 1),
        EndpointPlan("fd00:1::6", 8080, None, 1),
    )
    assert [endpoint.address for endpoint in plan("10.96.0.10", 443).endpoints] == [
        ("10.1.0.5", 443),
        ("10.1.0.6", 443),
        ("fd00:1::6", 443),
    ]
    assert [endpoint.address for endpoint in plan("10.96.0.20", 5432).endpoints] == [
        ("10.2.0.7", 15432),
        ("fd00:2::7", 25432),
    ]
    assert repr(plan("10.96.0.20", 5432).endpoints[1]) == (
        "EndpointPlan([fd00:2::7]:25432, identity='spiffe://td/ns/db/sa/pg', weight=1)"
    )
    assert len({*plan("10.96.0.10", 80).endpoints, EndpointPlan("10.1.0.6", 8080, None, 1)}) == 3


@pytest.mark.parametrize(
    ("method", "target", "route"),
    [
        ("GET", "/api/items", "api"),
        ("PUT", "/api/items?x=1", "api"),
        ("GET", "/api/", "api"),
        ("POST", "/api/items", DEFAULT_ROUTE),  # api lists GET and PUT only
        ("GET", "/apis", DEFAULT_ROUTE),
        ("DELETE", "/admin", "admin"),  # no methods listed: any method
        ("GET", "/admin?debug=1", "admin"),  # the query is not part of the path
        ("GET", "/admin/users", DEFAULT_ROUTE),  # exact path only
        ("GET", "/", DEFAULT_ROUTE),
    ],
)
def test_the_first_route_matching_method_and_path_wins(method: str, target: str, route: str) -> None:
    assert plan("10.96.0.10", 80).route(method, target).name == route


def test_routes_inherit_the_services_timeout_and_retry() -> None:
    web = plan("10.96.0.10", 80)
    api, admin, default = web.route("GET", "/api/x"), web.route("GET", "/admin"), web.default_route
    assert (api.timeout, admin.timeout, default.timeout) == (2.0, 10.0, 10.0)
    assert admin.retry is default.retry
    assert default.retry.statuses == {503} and default.retry.max_attempts == 2
    assert (default.retry.statuses or default.retry.grpc_codes) and default.retry.on(RetryCondition.CONNECT_FAILURE)
    assert not default.retry.on(RetryCondition.RESET)
    assert api.retry.conditions == {RetryCondition.CONNECT_FAILURE, RetryCondition.PER_TRY_TIMEOUT}
    assert (api.retry.per_try_timeout, api.retry.max_attempts, api.retry.max_body) == (0.5, 3, 64 * 1024)
    assert api.retry.grpc_codes == {14, 1}
    assert api.retry.grpc_codes and not api.retry.statuses
    db = plan("10.96.0.20", 5432).default_route
    assert (db.timeout, db.retry.per_try_timeout, db.retry.statuses, db.retry.grpc_codes) == (
        None,
        None,
        frozenset(),
        frozenset(),
    )


def test_the_table_finds_services_by_canonical_ip_and_port() -> None:
    assert INDEX.service("10.96.0.10", 80) is INDEX.service("fd00::10", 80) is plan("10.96.0.10", 80)
    assert INDEX.service("::ffff:10.96.0.10", 443) is plan("10.96.0.10", 443)  # a dual-stack socket's view
    assert INDEX.service("::ffff:10.96.0.20", 5432) is plan("10.96.0.20", 5432)
    assert INDEX.service("10.96.0.10", 8080) is None  # the target port is the endpoints', not the service's
    assert INDEX.service("10.96.0.20", 80) is None
    assert INDEX.service("10.1.0.5", 8080) is None  # an endpoint is no service
    assert INDEX.service("::ffff:10.1.0.5", 80) is None
    assert ServiceTable(()).lookup("10.96.0.10", 80) is None


def test_endpoint_identities_come_before_outbound_meshed() -> None:
    exact = INDEX.meshed("10.1.0.5", 8080)
    assert exact is not None and exact.expected.pattern == "spiffe://td/ns/shop/sa/web"
    assert exact.expected.matches("spiffe://td/ns/shop/sa/web")
    assert not exact.expected.matches("spiffe://td/ns/shop/sa/other")
    # The same IP on another port, and endpoints without an identity: outbound.meshed decides.
    for ip, port in [("10.1.0.5", 9090), ("10.1.0.6", 8080)]:
        fallback = INDEX.meshed(ip, port)
        assert fallback is not None and fallback.expected.pattern == "spiffe://td/ns/shop/*"
    mapped = INDEX.meshed("::ffff:10.1.0.5", 8080)  # an IPv4 endpoint as a dual-stack socket reports it
    assert mapped is exact
    pg = INDEX.meshed("fd00:2::7", 25432)
    assert pg is not None and pg.expected.pattern == "spiffe://td/ns/db/sa/pg"
    assert INDEX.meshed("fd00:1::6", 8080) is None  # no identity, outside every meshed network
    assert INDEX.services.endpoint_identities == {
        ("10.1.0.5", 8080): "spiffe://td/ns/shop/sa/web",
        ("10.1.0.5", 443): "spiffe://td/ns/shop/sa/web",
        ("fd00:2::7", 25432): "spiffe://td/ns/db/sa/pg",
    }


def test_an_endpoint_identity_alone_requires_a_proxy_identity() -> None:
    with_identity = decode_policy(
        b"""
outbound:
  services:
    - {name: api, addresses: [10.96.0.1], ports: [{port: 80}],
       endpoints: [{address: 10.1.0.1, identity: "spiffe://td/ns/a/sa/api"}]}
""",
        "yaml",
    )
    without = decode_policy(
        b"outbound: {services: [{name: api, addresses: [10.96.0.1], ports: [{port: 80}], endpoints: "
        b"[{address: 10.1.0.1}]}]}",
        "yaml",
    )
    assert PolicyIndex(with_identity).requires_identity
    assert not PolicyIndex(without).requires_identity
    assert PolicyIndex(without).meshed("10.1.0.1", 80) is None
