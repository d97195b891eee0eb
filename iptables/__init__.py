"""mesh-init: the init container. Installs the iptables rules that send a pod's TCP through its proxy."""
