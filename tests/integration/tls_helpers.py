"""Certificates and SASL users for the TLS/SASL tests, made with the real
tools: `openssl req`/`openssl x509` (a small CA, an RSA and an ECDSA server
certificate for the instance's hostname, a second name for SNI) and
`saslpasswd2` (a Cyrus sasldb).  Everything lands in a directory that the
instance's account can read.

    certs = make_certs(workdir)        # dict of paths
    conf = tls_conf(certs)             # main.cf settings for smtpd TLS
    sasl_setup(inst, {"alice@example.org": "secret"})  # smtpd.conf + sasldb
    make_client_certs(certs)           # client certificates, CA-signed and not
"""
import hashlib
import os
import shutil
import ssl
import subprocess

import harness

HOSTNAME = "localhost.localdomain"      # myhostname of a `postern init` instance
SNI_NAME = "other.example.net"


def _run(argv, cwd, input=None):
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, input=input)
    assert r.returncode == 0, "%s failed: %s" % (" ".join(argv), r.stderr)
    return r


def make_certs(directory):
    """CA + RSA (with chain) + ECDSA for HOSTNAME and 127.0.0.1, and a
    self-signed chain file (key + cert) for SNI_NAME."""
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o755)
    d = directory
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
          "-out", "ca.pem", "-days", "2", "-subj", "/CN=postern test CA"], d)
    san = "subjectAltName=DNS:%s,IP:127.0.0.1" % HOSTNAME
    _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "rsa.key", "-out",
          "rsa.csr", "-subj", "/CN=" + HOSTNAME, "-addext", san], d)
    _run(["openssl", "x509", "-req", "-in", "rsa.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
          "-CAcreateserial", "-days", "2", "-copy_extensions", "copy", "-out", "rsa.crt"], d)
    _run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-keyout", "ec.key", "-out", "ec.csr", "-subj", "/CN=" + HOSTNAME, "-addext", san], d)
    _run(["openssl", "x509", "-req", "-in", "ec.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
          "-CAcreateserial", "-days", "2", "-copy_extensions", "copy", "-out", "ec.crt"], d)
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "sni.key",
          "-out", "sni.crt", "-days", "2", "-subj", "/CN=" + SNI_NAME,
          "-addext", "subjectAltName=DNS:" + SNI_NAME], d)
    paths = {name: os.path.join(d, name) for name in
             ("ca.pem", "rsa.key", "rsa.crt", "ec.key", "ec.crt", "sni.key", "sni.crt")}
    # leaf + CA: the chain the server sends
    paths["rsa.pem"] = os.path.join(d, "rsa.pem")
    with open(paths["rsa.pem"], "w") as out:
        for part in ("rsa.crt", "ca.pem"):
            with open(os.path.join(d, part)) as f:
                out.write(f.read())
    paths["sni-chain.pem"] = os.path.join(d, "sni-chain.pem")
    with open(paths["sni-chain.pem"], "w") as out:
        for part in ("sni.key", "sni.crt"):
            with open(os.path.join(d, part)) as f:
                out.write(f.read())
    for p in os.listdir(d):
        os.chmod(os.path.join(d, p), 0o644)     # test keys: readable by the instance
    return paths


def make_client_certs(certs):
    """Client certificates next to make_certs()'s files: client.crt/.key
    (CN client.example) and client2.crt/.key (CN other-client.example),
    both signed by the test CA, and selfsigned.crt/.key (CN
    rogue.example).  Adds their paths and SHA-256 fingerprints as openssl
    prints them ("AB:CD:...": fp_client, fp_client2, fp_selfsigned, and
    pkeyfp_client2 for the public key's) to certs and returns it."""
    d = os.path.dirname(certs["ca.pem"])
    for name, cn in (("client", "client.example"), ("client2", "other-client.example")):
        _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key",
              "-out", name + ".csr", "-subj", "/CN=" + cn], d)
        _run(["openssl", "x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey",
              "ca.key", "-CAcreateserial", "-days", "2", "-out", name + ".crt"], d)
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
          "selfsigned.key", "-out", "selfsigned.crt", "-days", "2", "-subj",
          "/CN=rogue.example"], d)
    for name in ("client", "client2", "selfsigned"):
        for ext in ("crt", "key"):
            certs["%s.%s" % (name, ext)] = os.path.join(d, "%s.%s" % (name, ext))
            os.chmod(certs["%s.%s" % (name, ext)], 0o644)
        out = _run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in",
                    name + ".crt"], d).stdout
        certs["fp_" + name] = out.strip().split("=", 1)[1]
    # the public key's fingerprint: SHA-256 of the DER SubjectPublicKeyInfo
    der = subprocess.run(["openssl", "pkey", "-in", certs["client2.key"], "-pubout",
                          "-outform", "DER"], capture_output=True, check=True).stdout
    digest = hashlib.sha256(der).hexdigest().upper()
    certs["pkeyfp_client2"] = ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))
    return certs


def tls_conf(certs, level="may"):
    return {
        "smtpd_tls_security_level": level,
        "smtpd_tls_cert_file": certs["rsa.pem"],
        "smtpd_tls_key_file": certs["rsa.key"],
        "smtpd_tls_eccert_file": certs["ec.crt"],
        "smtpd_tls_eckey_file": certs["ec.key"],
    }


def client_context(certs, check_hostname=True):
    ctx = ssl.create_default_context(cafile=certs["ca.pem"])
    ctx.check_hostname = check_hostname
    return ctx


def sasl_setup(inst, users, mechs="PLAIN LOGIN SCRAM-SHA-256 CRAM-MD5", db=None,
               db_path_seen=None):
    """DIR/sasl2/smtpd.conf (sasldb auxprop) and a sasldb (default
    DIR/sasl2/sasldb2) with `users` {user@realm: password} created by
    saslpasswd2; db_path_seen is the sasldb_path smtpd.conf names (the
    path inside a chroot).  Returns the main.cf settings that point smtpd
    at them."""
    d = os.path.join(inst.dir, "sasl2")
    os.makedirs(d, exist_ok=True)
    db = db or os.path.join(d, "sasldb2")
    os.makedirs(os.path.dirname(db), exist_ok=True)
    with open(os.path.join(d, "smtpd.conf"), "w") as f:
        f.write("pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
                "mech_list: %s\nsasldb_path: %s\n" % (mechs, db_path_seen or db))
    for login, password in users.items():
        user, realm = login.split("@", 1)
        _run(["saslpasswd2", "-c", "-p", "-f", db, "-u", realm, user], d, input=password)
    # the instance's account must read the configuration and the database
    owner = "postern" if inst.as_root else inst.user
    if harness.is_root() and owner and owner != "root":
        for p in (d, db, os.path.join(d, "smtpd.conf")):
            shutil.chown(p, owner, None)
    os.chmod(d, 0o755)
    os.chmod(os.path.join(d, "smtpd.conf"), 0o644)
    return {"cyrus_sasl_config_path": d, "smtpd_sasl_auth_enable": "yes"}
