"""`nginx -T`'s output read as the files it read, the main config first."""

from __future__ import annotations

from controlplane.render.nginx_dump import files_read


def test_each_file_with_its_lines_in_the_order_read() -> None:
    dump = ("nginx: the configuration file /etc/nginx/nginx.conf syntax is ok\n"
            "# configuration file /etc/nginx/nginx.conf:\npid /run/nginx.pid;\nhttp { include d/http.conf; }\n"
            "# configuration file /etc/nginx/d/http.conf:\n# a comment stays a line\n")
    assert files_read(dump) == {"/etc/nginx/nginx.conf": ["pid /run/nginx.pid;", "http { include d/http.conf; }"],
                                "/etc/nginx/d/http.conf": ["# a comment stays a line"]}
    assert files_read("no heads at all\n") == {}
