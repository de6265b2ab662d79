"""monitor.parsers.netbios on Samba nmbd/nmblookup datagrams; malformed cases by hand, each
named for its defect."""

from __future__ import annotations

from wire import udp_datagrams as w

from monitor.parsers import netbios

A = w.HOST_A
B = w.HOST_B


def test_first_level_decoding_and_rendering() -> None:
    raw = netbios.decode_first_level(b"FHELFDCNFCEBEECNDADBCACACACACAAA")
    assert raw == b"WKS-RAD-01     \x00"
    assert netbios.render_name(raw) == "WKS-RAD-01<00>"
    assert netbios.render_name(b"RADIOLOGY      \x1e") == "RADIOLOGY<1e>"


def test_parse_unique_registration() -> None:
    pkt = netbios.parse_nbns(w.NBNS_REGISTRATION_UNIQUE_NMBD)
    assert isinstance(pkt, netbios.NbnsPacket)
    assert (pkt.response, pkt.opcode, pkt.rcode) == (False, netbios.OPCODE_REGISTRATION, 0)
    assert pkt.question == "WKS-RAD-01<00>"
    assert pkt.names == (netbios.NbName("WKS-RAD-01<00>", False, "10.99.0.1"),)


def test_unique_registration_is_a_name_of_the_registrant() -> None:
    rec = w.run(
        netbios.handle_nbns, w.NBNS_REGISTRATION_UNIQUE_NMBD, src=A, dst=("10.99.0.255", None)
    )
    assert rec.observations == [(*A, "netbios.name", "WKS-RAD-01<00>")]
    assert rec.anomalies == []


def test_group_registration_is_a_group() -> None:
    rec = w.run(netbios.handle_nbns, w.NBNS_REGISTRATION_GROUP_NMBD, src=A)
    assert rec.observations == [(*A, "netbios.group", "RADIOLOGY<00>")]


def test_msbrowse_control_characters_become_question_marks() -> None:
    rec = w.run(netbios.handle_nbns, w.NBNS_REGISTRATION_MSBROWSE_NMBD, src=A)
    assert rec.observations == [(*A, "netbios.group", "??__MSBROWSE__?<01>")]


def test_query_and_release_say_nothing() -> None:
    assert w.run(netbios.handle_nbns, w.NBNS_QUERY_NMBLOOKUP, src=B).observations == []
    assert w.run(netbios.handle_nbns, w.NBNS_RELEASE_NMBD, src=B).observations == []


def test_positive_query_response_binds_the_name_to_its_address() -> None:
    rec = w.run(netbios.handle_nbns, w.NBNS_QUERY_RESPONSE_NMBD, src=A, dst=B)
    assert rec.observations == [(*A, "netbios.name", "WKS-RAD-01<00>")]
    # answered by another node (a WINS server): the address, without the answerer's MAC
    wins = ("10.99.0.53", "02:00:00:99:00:35")
    rec = w.run(netbios.handle_nbns, w.NBNS_QUERY_RESPONSE_NMBD, src=wins, dst=B)
    assert rec.observations == [("10.99.0.1", None, "netbios.name", "WKS-RAD-01<00>")]


def test_host_announcement() -> None:
    ann = netbios.parse_browser_datagram(w.BROWSER_HOST_ANNOUNCEMENT_NMBD)
    assert ann == netbios.BrowserAnnouncement(
        source_name="WKS-RAD-01<00>",
        opcode=netbios.HOST_ANNOUNCEMENT,
        server_name="WKS-RAD-01",
        os_version_major=6,
        os_version_minor=1,
    )
    rec = w.run(netbios.handle_datagram, w.BROWSER_HOST_ANNOUNCEMENT_NMBD, src=A)
    assert rec.observations == [
        (*A, "netbios.name", "WKS-RAD-01<20>"),
        (*A, "netbios.os_version", "6.1"),
    ]


def test_local_master_announcement() -> None:
    rec = w.run(netbios.handle_datagram, w.BROWSER_LOCAL_MASTER_ANNOUNCEMENT_NMBD, src=A)
    assert rec.kinds() == {"netbios.name": ["WKS-RAD-01<20>"], "netbios.os_version": ["6.1"]}


def test_other_browser_frames_say_nothing() -> None:
    for payload in (w.BROWSER_DOMAIN_ANNOUNCEMENT_NMBD, w.BROWSER_ELECTION_REQUEST_NMBD):
        assert netbios.parse_browser_datagram(payload) is None
        rec = w.run(netbios.handle_datagram, payload, src=A)
        assert (rec.observations, rec.anomalies) == ([], [])


# ------------------------------------------------------------------ hand-built malformed cases


def test_short_header_is_malformed() -> None:
    rec = w.run(netbios.handle_nbns, w.NBNS_QUERY_NMBLOOKUP[:7])
    assert [a[0] for a in rec.anomalies] == ["netbios.malformed"]


def test_name_cut_short_is_malformed() -> None:
    rec = w.run(netbios.handle_nbns, w.NBNS_REGISTRATION_UNIQUE_NMBD[:30])
    assert rec.anomalies == [("netbios.malformed", "a name runs past the end of the packet")]


def test_name_with_bytes_outside_a_to_p_is_a_bad_name() -> None:
    p = w.NBNS_REGISTRATION_UNIQUE_NMBD
    encoded_name_with_z = p[:13] + b"Z" + p[14:]
    rec = w.run(netbios.handle_nbns, encoded_name_with_z)
    assert rec.anomalies == [("netbios.bad_name", "an encoded name has a byte outside 'A'..'P'")]
    assert rec.observations == []


def test_first_label_not_32_bytes_is_a_bad_name() -> None:
    p = w.NBNS_QUERY_NMBLOOKUP
    dns_style_label = p[:12] + b"\x05" + p[13:]
    assert w.run(netbios.handle_nbns, dns_style_label).anomalies[0][0] == "netbios.bad_name"


def test_datagram_without_smb_is_malformed() -> None:
    p = w.BROWSER_HOST_ANNOUNCEMENT_NMBD
    user_data_not_smb = p[:82] + b"\xfeSMB" + p[86:]
    rec = w.run(netbios.handle_datagram, user_data_not_smb)
    assert rec.anomalies == [("netbios.malformed", "the datagram's user data is not an SMB")]


def test_announcement_cut_short_is_malformed() -> None:
    p = w.BROWSER_HOST_ANNOUNCEMENT_NMBD
    announcement_cut_at_server_name = p[:-28]
    rec = w.run(netbios.handle_datagram, announcement_cut_at_server_name)
    assert rec.anomalies == [("netbios.malformed", "a browser announcement of 16 bytes")]


def test_every_prefix_never_raises() -> None:
    for n in range(len(w.BROWSER_HOST_ANNOUNCEMENT_NMBD)):
        w.run(netbios.handle_datagram, w.BROWSER_HOST_ANNOUNCEMENT_NMBD[:n])
    for n in range(len(w.NBNS_QUERY_RESPONSE_NMBD)):
        w.run(netbios.handle_nbns, w.NBNS_QUERY_RESPONSE_NMBD[:n])
