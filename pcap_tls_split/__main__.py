from .cli import main

main(prog_name="pcap-tls-split")
