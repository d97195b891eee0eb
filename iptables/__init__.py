"""mesh-init: the pod's init container. Generates and applies the iptables rules that send TCP through the proxy."""
