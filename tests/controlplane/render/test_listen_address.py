"""Ops' own server blocks that name an address on the generated blocks' port: nginx would give them
every request to that address, a generated tenant's included."""

from __future__ import annotations

from controlplane.render.listen_address import address_listens

DUMP = """\
# configuration file /etc/nginx/nginx.conf:
http {
    include /etc/nginx/dualstack/http.conf;
    server { listen 127.0.0.1:80; server_name own.example; }
    server { listen 80; listen [::]:80; server_name fine.example; }
    server { listen 0.0.0.0:80; listen *:80; listen [::]:80 ipv6only=on; server_name wild.example; }
    server { listen [::1]:80; server_name six.example; }
    server { listen 127.0.0.1:8081; server_name other-port.example; }
    server { listen unix:/run/x.sock; }
    # listen 10.0.0.1:80; a comment
}
# configuration file /etc/nginx/dualstack/tenants/demo.conf:
server {
    listen 80;
    listen [::]:80;
    server_name demo.agentbar.ai;
}
"""


def test_an_address_on_a_generated_port_is_named_and_nothing_else() -> None:
    found = address_listens(DUMP, "/etc/nginx/dualstack")
    assert [line.split(": ", 1)[0] + " " + line.split("`")[1] for line in found] == [
        "/etc/nginx/nginx.conf listen 127.0.0.1:80", "/etc/nginx/nginx.conf listen [::1]:80"]
    assert "`listen 127.0.0.1:80` names one address on port 80" in found[0]
    assert "`listen [::1]:80` names one address on port 80" in found[1]
    assert "Listen on the port alone (`listen 80;`)" in found[0]


def test_without_generated_blocks_on_that_port_nothing_is_said() -> None:
    assert address_listens(DUMP.replace("listen 80;\n    listen [::]:80;", "listen 8443;"),
                           "/etc/nginx/dualstack") == []


def test_a_listen_split_across_lines_or_quoted_is_read_as_nginx_reads_it() -> None:
    dump = DUMP.replace("    server { listen [::1]:80; server_name six.example; }\n",
                        "    server {\n        listen\n            127.0.0.2:80;\n        server_name split.example; }\n"
                        '    server { listen "127.0.0.1:8080"; listen "80"; listen [::0]:80; listen [0:0:0:0:0:0:0:0]:80; }\n')
    found = address_listens(dump, "/etc/nginx/dualstack")
    assert [line.split("`")[1] for line in found] == ["listen 127.0.0.1:80", "listen 127.0.0.2:80"]


def test_a_folder_beside_the_generated_one_is_ops_own() -> None:
    dump = DUMP.replace("# configuration file /etc/nginx/nginx.conf:\n", "# configuration file /etc/nginx/nginx.conf:\n"
                        "# configuration file /etc/nginx/dualstack.bak/old.conf:\nserver { listen 127.0.0.9:80; }\n")
    found = address_listens(dump, "/etc/nginx/dualstack")
    assert any("/etc/nginx/dualstack.bak/old.conf: `listen 127.0.0.9:80`" in line for line in found)
