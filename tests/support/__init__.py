"""What the tests stand on, one module per concern; tests/conftest.py wraps them as fixtures.

mariadb  the real MariaDB server (found or started) and throw-away databases + users
freepbx  FreePBX's queue tables in such a database, and an /etc/freepbx.conf naming it
smtp     a real aiosmtpd server on loopback (plain, STARTTLS, implicit TLS, AUTH), its TLS certificate
net      a TCP listener that never speaks (a hung relay or database)
env      python-dotenv env files, and the environment Asterisk gives agi-bin/missed.py
readme   the README's key and placeholder tables, so tests check the manual against the code
"""
