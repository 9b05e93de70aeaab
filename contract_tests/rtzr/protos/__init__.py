"""Client modules compiled from RTZR's two protos, as a client of the real service would compile them
(``fakertzr/grpc/generate.sh``). Import one of them per process: both define ``online_decoder``."""
