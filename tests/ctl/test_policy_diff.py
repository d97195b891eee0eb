"""The pure comparison behind ``meshctl policy diff``: every verdict an open connection can get, and every kind
of bundle change, from real bundles decoded by ``policy.load``."""

from __future__ import annotations

import textwrap

import msgspec
import pytest

from ctl.policy_diff import ConnectionVerdict, PolicyDiff, diff_policies, policy_changes
from dataplane.admin.schema import ConnectionInfo
from policy.load import decode_policy, encode_policy, policy_version
from policy.model import Policy

WEB = "spiffe://td/ns/shop/sa/web"
ADMIN = "spiffe://td/ns/ops/sa/admin"


def bundle(text: str) -> Policy:
    return decode_policy(textwrap.dedent(text).encode(), "yaml")


def conn(conn_id: int = 1, **fields: object) -> ConnectionInfo:
    base: dict[str, object] = {
        "id": conn_id,
        "direction": "inbound",
        "client": "10.0.1.1:40000",
        "original_dst": "10.0.0.9:8080",
        "upstream": "10.0.0.9:8080",
        "protocol": "opaque",
        "state": "open",
        "opened_at": 0.0,
    }
    return msgspec.convert({**base, **fields}, ConnectionInfo)


def mtls(conn_id: int = 1, identity: str = WEB, **fields: object) -> ConnectionInfo:
    return conn(conn_id, tls="true", client_id=identity, **fields)


def verdict(live: Policy, candidate: Policy, connection: ConnectionInfo) -> ConnectionVerdict:
    (only,) = diff_policies(live, candidate, [connection]).connections
    return only


def authorized(rules: str, *, port: int = 8080, mode: str = "permissive") -> Policy:
    """A bundle whose inbound ``port`` has these authorization rules (YAML flow list) and mTLS mode."""
    return bundle(f"""
        version: 1
        inbound:
          ports:
            - port: {port}
              mtls: {mode}
              authorization: {rules}
        """)


OPEN = bundle("version: 1")

# === inbound: what revoke_on_reload would close ===


def test_opaque_client_no_rule_allows_is_denied() -> None:
    found = verdict(OPEN, authorized("[]"), conn())
    assert (found.verdict, found.reason) == (
        "denied",
        "no rule of port 8080 allows a plaintext client on an opaque connection",
    )


def test_opaque_client_only_an_http_rule_admits_is_denied() -> None:
    found = verdict(OPEN, authorized(f"[{{identities: ['{WEB}'], paths: ['/api/*']}}]"), mtls(protocol="tls"))
    assert found.verdict == "denied"
    assert found.reason == f"no rule of port 8080 allows {WEB} on an opaque (tls) connection"


def test_plaintext_client_on_a_port_that_becomes_strict_is_denied() -> None:
    found = verdict(OPEN, authorized("null", mode="strict"), conn(protocol="http1"))
    assert (found.verdict, found.reason) == ("denied", "plaintext client and port 8080 becomes strict: mesh mTLS only")


def test_mtls_client_on_a_port_that_becomes_strict_is_unchanged() -> None:
    found = verdict(OPEN, authorized("null", mode="strict"), mtls(protocol="http1"))
    assert (found.verdict, found.reason) == ("unchanged", "port 8080's authorization is unchanged")


def test_http_client_no_rule_admits_is_denied() -> None:
    found = verdict(OPEN, authorized(f"[{{identities: ['{ADMIN}']}}]"), mtls(protocol="h2"))
    assert (found.verdict, found.reason) == ("denied", f"no rule of port 8080 admits {WEB} any more")


def test_http_client_admitted_only_for_some_paths_has_its_requests_limited() -> None:
    rules = f"[{{identities: ['{WEB}'], paths: ['/api/*'], methods: [GET]}}]"
    for protocol in ("http1", "h2", "http1-h2"):
        found = verdict(OPEN, authorized(rules), mtls(protocol=protocol))
        assert found.verdict == "requests limited", protocol
        assert found.reason == f"port 8080 admits {WEB} only for some paths or methods: its other requests get 403"


def test_http_client_a_changed_rule_still_admits_fully_is_unchanged() -> None:
    found = verdict(authorized("[{identities: ['*']}]"), authorized(f"[{{identities: ['{WEB}']}}]"), mtls())
    assert (found.verdict, found.reason) == (
        "unchanged",
        f"port 8080 changes its authorization; its rules still allow {WEB}",
    )


def test_same_rules_leave_a_limited_connection_unchanged() -> None:
    rules = authorized(f"[{{identities: ['{WEB}'], paths: ['/api/*']}}]")
    found = verdict(rules, rules, mtls(protocol="http1"))
    assert found.verdict == "unchanged"


def test_other_ports_keep_their_rules() -> None:
    found = verdict(OPEN, authorized("[]"), conn(original_dst="10.0.0.9:9090"))
    assert (found.verdict, found.reason) == ("unchanged", "port 9090's authorization is unchanged")


def test_denied_but_half_closed_is_left_to_finish() -> None:
    found = verdict(OPEN, authorized("[]"), conn(state="client_half_closed"))
    assert found.verdict == "unchanged"
    assert found.reason.endswith(", but it is client_half_closed and a reload closes only open connections")


def test_a_port_that_becomes_excluded_is_unchanged_with_a_note() -> None:
    candidate = bundle("""
        version: 1
        inbound:
          authorization: []
          exclude_ports: [8080]
        """)
    found = verdict(OPEN, candidate, conn())
    assert (found.verdict, found.reason) == ("unchanged", "port 8080 becomes excluded: relayed untouched")
    assert found.notes == ("becomes excluded (relayed untouched)",)


def test_a_port_no_longer_excluded_is_judged_by_its_rules() -> None:
    live = bundle("version: 1\ninbound:\n  exclude_ports: [8080]\n")
    found = verdict(live, authorized("[]"), conn())
    assert found.verdict == "denied"
    assert "no longer excluded" in found.notes


# === outbound: rerouted, re-identified, unchanged ===

SERVICES = bundle("""
    version: 1
    outbound:
      services:
        - name: web
          addresses: [10.96.0.10]
          ports: [{port: 80, target_port: 8080}]
          endpoints: [{address: 10.0.0.4}, {address: 10.0.0.5}]
        - name: api
          addresses: [10.96.0.20]
          ports: [{port: 80}]
          endpoints: [{address: 10.0.0.7}]
    """)


def web(
    endpoints: str = "[]", *, addresses: str = "[10.96.0.10]", port: str = "{port: 80, target_port: 8080}"
) -> Policy:
    """A bundle with one service, web."""
    return bundle(f"""
        version: 1
        outbound:
          services:
            - name: web
              addresses: {addresses}
              ports: [{port}]
              endpoints: {endpoints}
        """)


def out(original_dst: str, upstream: str | None, conn_id: int = 1, **fields: object) -> ConnectionInfo:
    return conn(conn_id, direction="outbound", original_dst=original_dst, upstream=upstream, **fields)


def test_endpoint_that_stays_is_unchanged() -> None:
    found = verdict(SERVICES, SERVICES, out("10.96.0.10:80", "10.0.0.4:8080", protocol="http1"))
    assert (found.verdict, found.reason) == ("unchanged", "same destination (service web:80) and server identity")


def test_endpoint_removed_from_its_service_is_rerouted_and_drains() -> None:
    candidate = web("[{address: 10.0.0.5}]")
    found = verdict(SERVICES, candidate, out("10.96.0.10:80", "10.0.0.4:8080"))
    assert found.verdict == "rerouted"
    assert found.reason == (
        "endpoint 10.0.0.4:8080 leaves service web:80: it drains (its requests finish, new ones go to the other"
        " endpoints)"
    )
    # Another port of the same endpoint is another endpoint: the target port counts.
    moved = bundle(
        encode_policy(SERVICES).decode().replace('"target_port":8080', '"target_port":8081'),
    )
    assert verdict(SERVICES, moved, out("10.96.0.10:80", "10.0.0.4:8080")).verdict == "rerouted"


def test_last_endpoint_removed_says_new_requests_fail() -> None:
    candidate = web()
    found = verdict(SERVICES, candidate, out("10.96.0.10:80", "10.0.0.4:8080"))
    assert found.verdict == "rerouted"
    assert found.reason.endswith("the service has no endpoints left, new requests get 503")


def test_destination_that_becomes_a_service_is_rerouted() -> None:
    found = verdict(OPEN, SERVICES, out("10.96.0.10:80", "10.96.0.10:80"))
    assert (found.verdict, found.reason) == (
        "rerouted",
        "10.96.0.10:80 becomes service web:80: new requests and connections go to its endpoints",
    )


def test_service_removed_is_rerouted() -> None:
    found = verdict(SERVICES, OPEN, out("10.96.0.10:80", "10.0.0.4:8080"))
    assert (found.verdict, found.reason) == (
        "rerouted",
        "10.96.0.10:80 is no longer service web:80: new requests go to 10.96.0.10:80 itself",
    )


def test_address_moved_to_another_service_is_rerouted() -> None:
    swapped = bundle("""
        version: 1
        outbound:
          services:
            - name: web
              addresses: [10.96.0.11]
              ports: [{port: 80, target_port: 8080}]
              endpoints: [{address: 10.0.0.4}]
            - name: api
              addresses: [10.96.0.20, 10.96.0.10]
              ports: [{port: 80}]
              endpoints: [{address: 10.0.0.7}]
        """)
    found = verdict(SERVICES, swapped, out("10.96.0.10:80", "10.0.0.4:8080"))
    assert (found.verdict, found.reason) == ("rerouted", "10.96.0.10:80 moves from service web:80 to api:80")


def test_connection_not_yet_connected_is_judged_by_its_destination() -> None:
    assert verdict(SERVICES, SERVICES, out("10.96.0.10:80", None)).verdict == "unchanged"
    assert verdict(SERVICES, OPEN, out("10.96.0.10:80", None)).verdict == "rerouted"


def meshed(identity: str, cidr: str = "10.0.3.0/24") -> Policy:
    return bundle(f"""
        version: 1
        outbound:
          meshed:
            - cidr: {cidr}
              identity: {identity}
        """)


def test_server_identity_change_is_re_identified() -> None:
    found = verdict(meshed(WEB), meshed(ADMIN), out("10.0.3.3:443", "10.0.3.3:443"))
    assert (found.verdict, found.reason) == (
        "re-identified",
        f"10.0.3.3:443's proxy must prove {ADMIN} instead of {WEB}",
    )


def test_destination_that_becomes_or_stops_being_meshed_is_re_identified() -> None:
    connection = out("10.0.3.3:443", "10.0.3.3:443")
    became = verdict(OPEN, meshed(WEB), connection)
    assert (became.verdict, became.reason) == (
        "re-identified",
        f"10.0.3.3:443 becomes meshed: its proxy must prove {WEB}",
    )
    stopped = verdict(meshed(WEB), OPEN, connection)
    assert (stopped.verdict, stopped.reason) == (
        "re-identified",
        f"10.0.3.3:443 is no longer meshed (was {WEB}): plaintext",
    )
    assert verdict(meshed(WEB), meshed(WEB, cidr="10.0.4.0/24"), connection).verdict == "re-identified"
    assert verdict(meshed(WEB), meshed(WEB), connection).verdict == "unchanged"


def test_endpoint_identity_change_is_re_identified_through_its_upstream() -> None:
    with_identity = bundle(
        encode_policy(SERVICES)
        .decode()
        .replace('"address":"10.0.0.4","identity":null', f'"address":"10.0.0.4","identity":"{WEB}"'),
    )
    found = verdict(SERVICES, with_identity, out("10.96.0.10:80", "10.0.0.4:8080"))
    assert (found.verdict, found.reason) == (
        "re-identified",
        f"10.0.0.4:8080 becomes meshed: its proxy must prove {WEB}",
    )
    # The other endpoint's connections are not concerned.
    assert verdict(SERVICES, with_identity, out("10.96.0.10:80", "10.0.0.5:8080")).verdict == "unchanged"


def test_rerouted_is_not_also_re_identified() -> None:
    # The endpoint leaves and loses its identity: where new requests go is what matters, not what it proved.
    live = bundle(
        encode_policy(SERVICES)
        .decode()
        .replace('"meshed":[]', f'"meshed":[{{"cidr":"10.0.0.0/24","identity":"{WEB}"}}]')
    )
    found = verdict(live, OPEN, out("10.96.0.10:80", "10.0.0.4:8080"))
    assert (found.verdict, found.notes) == ("rerouted", ())


def test_unreadable_upstream_is_a_note_not_a_failure() -> None:
    found = verdict(SERVICES, SERVICES, out("10.96.0.10:80", "somewhere"))
    assert found.verdict == "unchanged"
    assert found.notes[0].startswith("upstream 'somewhere' is not IP:PORT")


def test_unreadable_original_destination_is_an_error() -> None:
    with pytest.raises(ValueError, match="original_dst 'nowhere' is not IP:PORT"):
        diff_policies(OPEN, OPEN, [out("nowhere", None)])


def test_ipv6_destinations() -> None:
    live = web('[{address: "fd00::4"}]', addresses="[fd00::10]", port="{port: 80}")
    found = verdict(live, OPEN, out("[fd00::10]:80", "[fd00::4]:80"))
    assert (found.verdict, found.reason) == (
        "rerouted",
        "[fd00::10]:80 is no longer service web:80: new requests go to [fd00::10]:80 itself",
    )


# === notes: the destination's other settings ===


def test_timeout_and_protocol_changes_are_notes() -> None:
    candidate = bundle("""
        version: 1
        timeouts: {idle: 5m, response: 2s}
        outbound:
          ports: [{port: 443, protocol: opaque, connect_timeout: 250ms}]
        """)
    found = verdict(OPEN, candidate, out("10.0.3.3:443", "10.0.3.3:443"))
    assert found.verdict == "unchanged"
    assert found.notes == (
        "protocol detect -> opaque",
        "connect timeout 1s -> 250ms",
        "idle timeout 1h -> 5m",
        "response timeout none -> 2s",
    )


def test_excluded_destination_network_is_a_note() -> None:
    candidate = bundle("version: 1\noutbound:\n  exclude_cidrs: [10.0.3.0/24]\n")
    found = verdict(OPEN, candidate, out("10.0.3.3:443", "10.0.3.3:443"))
    assert found.notes == ("becomes excluded (relayed untouched)",)


# === the whole result ===


def test_counts_versions_and_disruption() -> None:
    connections = [
        conn(1),
        mtls(2),
        mtls(3, protocol="http1"),
        out("10.96.0.10:80", "10.0.0.4:8080", 4),
        out("10.0.3.3:443", "10.0.3.3:443", 5),
        conn(6, original_dst="10.0.0.9:9090"),
    ]
    candidate = bundle(f"""
        version: 1
        name: next
        inbound:
          ports:
            - port: 8080
              authorization: [{{identities: ['{WEB}'], paths: ['/api/*']}}, {{identities: ['{WEB}'], methods: [GET]}}]
        outbound:
          meshed: [{{cidr: 10.0.3.0/24, identity: '{WEB}'}}]
        """)
    result = diff_policies(SERVICES, candidate, reversed(connections))
    assert [found.connection.id for found in result.connections] == [1, 2, 3, 4, 5, 6]
    assert [found.verdict for found in result.connections] == [
        "denied",
        "denied",
        "requests limited",
        "rerouted",
        "re-identified",
        "unchanged",
    ]
    counts = result.counts
    assert (counts.denied, counts.requests_limited, counts.rerouted, counts.re_identified, counts.unchanged) == (
        2,
        1,
        1,
        1,
        1,
    )
    assert result.disrupts
    assert (result.live.name, result.live.version) == ("", policy_version(SERVICES))
    assert (result.candidate.name, result.candidate.version) == ("next", policy_version(candidate))
    # The JSON form is the Struct itself and reads back.
    assert msgspec.json.decode(msgspec.json.encode(result), type=PolicyDiff) == result


def test_same_policy_changes_nothing() -> None:
    result = diff_policies(SERVICES, SERVICES, [conn(1), out("10.96.0.10:80", "10.0.0.5:8080", 2)])
    assert not result.disrupts
    assert result.changes == ()
    assert result.counts.unchanged == 2


def test_no_connections_nothing_disrupted() -> None:
    result = diff_policies(OPEN, authorized("[]"), [])
    assert result.connections == ()
    assert not result.disrupts


# === changes to the bundle, one line each ===


def changes(live: Policy, candidate: Policy) -> list[str]:
    return [f"{change.subject}: {change.change}" for change in policy_changes(live, candidate)]


def test_services_added_and_removed() -> None:
    assert changes(OPEN, SERVICES) == [
        "outbound service web: added: 10.96.0.10 port(s) 80, 2 endpoint(s), 0 route(s)",
        "outbound service api: added: 10.96.0.20 port(s) 80, 1 endpoint(s), 0 route(s)",
    ]
    assert changes(SERVICES, OPEN) == ["outbound service web: removed", "outbound service api: removed"]


ROUTED = """
    version: 1
    outbound:
      services:
        - name: web
          addresses: [10.96.0.10]
          ports: [{port: 80, name: http, target_port: 8080}]
          endpoints: [{address: 10.0.0.4}, {address: 10.0.0.5, weight: 2, identity: "%(identity)s"}]
          timeout: 10s
          routes:
            - name: api
              paths: [/api/*]
              timeout: 1s
              retry: {max_attempts: 2, statuses: [503]}
            - name: static
              methods: [GET]
"""


def test_service_details_changed() -> None:
    live = bundle(ROUTED % {"identity": WEB})
    candidate = bundle("""
        version: 1
        outbound:
          services:
            - name: web
              addresses: [10.96.0.11]
              ports: [{port: 80, name: http, target_port: 8081}, {port: 443}]
              endpoints: [{address: 10.0.0.5, weight: 3, identity: "spiffe://td/ns/shop/sa/web2"}, {address: 10.0.0.6}]
              timeout: 5s
              retry: {conditions: [connect-failure, reset], per_try_timeout: 500ms}
              retry_budget: {ratio: 0.5, min_per_second: 5}
              balancer: {default_rtt: 50ms}
              outlier_detection: {consecutive_failures: 3, max_ejected_percent: 20}
              queue: {capacity: 100, failfast: 1s}
              routes:
                - name: static
                  methods: [GET, HEAD]
                - name: api
                  paths: [/api/*]
                  timeout: 2s
                  retry: {max_attempts: 3, statuses: [502, 503], grpc_statuses: [unavailable], max_body: 1024}
                - name: admin
                  paths: [/admin]
        """)
    assert changes(live, candidate) == [
        "outbound service web: addresses +10.96.0.11 -10.96.0.10",
        "outbound service web: port 80 target_port 8080 -> 8081",
        "outbound service web: port 443 added",
        "outbound service web: endpoint 10.0.0.5 identity spiffe://td/ns/shop/sa/web -> spiffe://td/ns/shop/sa/web2",
        "outbound service web: endpoint 10.0.0.5 weight 2 -> 3",
        "outbound service web: endpoint 10.0.0.6 added",
        "outbound service web: endpoint 10.0.0.4 removed",
        "outbound service web: route static methods +HEAD",
        "outbound service web: route api timeout 1s -> 2s",
        "outbound service web: route api retry.statuses +502",
        "outbound service web: route api retry.grpc_statuses +unavailable",
        "outbound service web: route api retry.max_attempts 2 -> 3",
        "outbound service web: route api retry.max_body 65536 -> 1024",
        "outbound service web: route admin added (paths [/admin])",
        "outbound service web: routes order (first match wins) [route api, route static] -> [route static, route api]",
        "outbound service web: timeout 10s -> 5s",
        "outbound service web: retry.conditions +reset -refused-stream",
        "outbound service web: retry.per_try_timeout null -> 500ms",
        "outbound service web: retry_budget.ratio 0.2 -> 0.5",
        "outbound service web: retry_budget.min_per_second 10 -> 5",
        "outbound service web: balancer.default_rtt 30ms -> 50ms",
        "outbound service web: outlier_detection.consecutive_failures 7 -> 3",
        "outbound service web: outlier_detection.max_ejected_percent 50 -> 20",
        "outbound service web: queue.capacity 10000 -> 100",
        "outbound service web: queue.failfast 3s -> 1s",
    ]


def test_route_removed_and_retry_set() -> None:
    live = bundle(ROUTED % {"identity": WEB})
    candidate = bundle(
        (ROUTED % {"identity": WEB})
        .replace("              retry: {max_attempts: 2, statuses: [503]}\n", "")
        .replace("            - name: static\n              methods: [GET]\n", "")
    )
    assert changes(live, candidate) == [
        "outbound service web: route api retry {statuses [503], max_attempts 2} -> null",
        "outbound service web: route static removed",
    ]


def test_meshed_entries_added_removed_changed_and_reordered() -> None:
    live = bundle(f"""
        version: 1
        outbound:
          meshed:
            - {{cidr: 10.0.0.0/16, identity: '{WEB}'}}
            - {{cidr: 10.1.0.0/16, identity: '*', ports: [443, 80]}}
            - {{cidr: 10.2.0.0/16, identity: '*'}}
        """)
    candidate = bundle(f"""
        version: 1
        outbound:
          meshed:
            - {{cidr: 10.1.0.0/16, identity: '*', ports: [80, 443], http1_over_h2: true}}
            - {{cidr: 10.0.0.0/16, identity: '{ADMIN}'}}
            - {{cidr: 10.3.0.0/16, identity: '*'}}
        """)
    assert changes(live, candidate) == [
        "outbound meshed 10.1.0.0/16 ports 80,443: http1_over_h2 false -> true",
        f"outbound meshed 10.0.0.0/16: identity {WEB} -> {ADMIN}",
        "outbound meshed 10.3.0.0/16: added (identity *)",
        "outbound meshed 10.2.0.0/16: removed",
        "outbound: meshed order (first match wins) [meshed 10.0.0.0/16, meshed 10.1.0.0/16 ports 80,443] ->"
        " [meshed 10.1.0.0/16 ports 80,443, meshed 10.0.0.0/16]",
    ]


def test_authorization_and_ports() -> None:
    live = bundle(f"""
        version: 1
        inbound:
          mtls: permissive
          ports:
            - {{port: 8080, authorization: [{{identities: ['{WEB}']}}]}}
            - {{port: 9090, idle_timeout: 1m}}
          opaque_ports: [5432]
        """)
    candidate = bundle(f"""
        version: 1
        timeouts: {{idle: 5m}}
        inbound:
          mtls: strict
          authorization: []
          ports:
            - {{port: 8080, authorization: [{{identities: ['{WEB}'], paths: ['/api/*'], methods: [GET]}}, \
{{unauthenticated: true, paths: [/healthz]}}]}}
            - {{port: 7070, authorization: null, protocol: opaque}}
          opaque_ports: [5432, 6379]
          exclude_ports: [22]
        outbound:
          exclude_cidrs: [169.254.169.254/32]
        """)
    assert changes(live, candidate) == [
        "timeouts: idle 1h -> 5m",
        "inbound: opaque_ports +6379",
        "inbound: exclude_ports +22",
        "inbound: mtls permissive -> strict",
        "inbound: authorization null (every client) -> [] (no client)",
        f"inbound port 8080: authorization [{{{WEB}}}] -> [{{{WEB} paths /api/* methods GET}}, "
        "{unauthenticated paths /healthz}]",
        "inbound port 7070: added (protocol opaque)",
        "inbound port 9090: removed",
        "outbound: exclude_cidrs +169.254.169.254/32",
    ]


def test_equal_spellings_are_no_change() -> None:
    live = bundle(
        "version: 1\ntimeouts: {idle: 60m}\noutbound:\n  services: [{name: a, addresses: [fd00:0::1], "
        "ports: [{port: 80}], endpoints: [{address: '[fd00::4]:80'}]}]\n"
    )
    candidate = bundle(
        "version: 1\ntimeouts: {idle: 1h}\noutbound:\n  services: [{name: a, addresses: [fd00::1], "
        "ports: [{port: 80}], endpoints: [{address: '[fd00:0::4]:80'}]}]\n"
    )
    assert changes(live, candidate) == []
