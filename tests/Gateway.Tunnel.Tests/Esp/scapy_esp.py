#!/usr/bin/python3
"""Scapy's IPsec ESP (scapy.layers.ipsec, an independent implementation) for Gateway's interop tests.

usage: scapy_esp.py decrypt|encrypt SPI KEYHEX ICVBYTES ESN(0|1) SRC DST  < lines > lines
  decrypt: each input line "ESNHIGH HEX" is an outer IPv4 + ESP packet; prints the inner packet hex
           (or "FAIL <reason>").
  encrypt: each input line "SEQ64 HEX" is an inner IP packet; prints outer IPv4 + ESP hex sealed
           with sequence number SEQ64 (low 32 bits on the wire, high 32 bits in the AAD with ESN).
"""
import sys
from scapy.layers.inet import IP
from scapy.layers.ipsec import CRYPT_ALGOS, ESP, CryptAlgo, SecurityAssociation, _salt_format_mode_iv
from cryptography.hazmat.primitives.ciphers import algorithms, modes

mode, spi, key, icv, esn, src, dst = sys.argv[1:8]
algo = 'AES-GCM'
if icv != '16':
    # Scapy's 'AES-GCM' goes through cryptography's AESGCM API, which only knows 16-byte tags.
    # Its older Cipher/modes.GCM path (same scapy ESP code) truncates and checks shorter ICVs.
    algo = 'AES-GCM-%s' % icv
    CRYPT_ALGOS[algo] = CryptAlgo(algo, cipher=algorithms.AES, mode=modes.GCM, key_size=(16, 24, 32),
                                  salt_size=4, block_size=1, iv_size=8, icv_size=int(icv),
                                  format_mode_iv=_salt_format_mode_iv)
sa = SecurityAssociation(ESP, spi=int(spi), crypt_algo=algo, crypt_key=bytes.fromhex(key),
                         crypt_icv_size=int(icv), auth_algo='NULL',
                         tunnel_header=IP(src=src, dst=dst), esn_en=esn == '1')
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    number, data = line.split()
    if mode == 'decrypt':
        try:
            inner = sa.decrypt(IP(bytes.fromhex(data)), esn_en=esn == '1', esn=int(number))
            print(bytes(inner).hex())
        except Exception as e:  # report, the C# side asserts
            print('FAIL', type(e).__name__, str(e).replace('\n', ' '))
    else:
        seq = int(number)
        # Through sa.seq_num: encrypt(seq_num=0) would fall back to the SA's counter.
        sa.seq_num = seq & 0xffffffff
        out = sa.encrypt(IP(bytes.fromhex(data)), esn_en=esn == '1', esn=seq >> 32)
        print(bytes(out).hex())
    sys.stdout.flush()
