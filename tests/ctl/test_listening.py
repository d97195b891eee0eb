from __future__ import annotations

import os
import socket

from ctl.lab.listening import listening_ports, parse_listening_ports

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:3A98 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1337        0 1 1
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0B0712C6:9DE8 0C0712C6:1F90 01 00000000:00000000 00:00000000 00000000     0        0 3 1
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000
"""


def test_parse_listening_ports_reads_only_listen_state() -> None:
    assert parse_listening_ports(TCP) == {15000, 8080}
    assert parse_listening_ports(TCP6) == {8080}
    assert parse_listening_ports("header only\n") == set()


def test_listening_ports_of_this_process() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        assert port not in listening_ports(os.getpid())
        listener.listen()
        assert port in listening_ports(os.getpid())


def test_listening_ports_of_a_gone_process_is_empty() -> None:
    assert listening_ports(2**22 + 1) == set()
