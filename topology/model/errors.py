"""Typed API errors carrying Neutron's HTTP status and error `type`.

Why: the business layer raises these and the API turns any of them into Neutron's error body
`{"NeutronError": {"type", "message", "detail"}}`, so the status code is decided once, where the
rule is checked, and clients (the openstack CLI) see the type names they know.
"""
from __future__ import annotations


class NeutronError(Exception):
    """Base: HTTP `status` and Neutron `type` (defaults to the class name)."""
    status: int = 500
    message: str = "An unknown exception occurred."

    def __init__(self, message: str | None = None, detail: str = "", **kwargs: object) -> None:
        text = message if message is not None else self.message
        if kwargs:
            try:
                text = text.format(**kwargs)
            except (KeyError, IndexError):
                pass
        super().__init__(text)
        self.text = text
        self.detail = detail

    @property
    def type(self) -> str:
        return type(self).__name__

    def body(self) -> dict:
        return {"NeutronError": {"type": self.type, "message": self.text, "detail": self.detail}}


# 400 --------------------------------------------------------------------------------------
class BadRequest(NeutronError):
    status = 400
    message = "Bad request."


class InvalidInput(BadRequest):
    message = "Invalid input for operation: {error_message}."


class MalformedRequestBody(BadRequest):
    message = "Malformed request body: {reason}."


class InvalidAllocationPool(BadRequest):
    message = "The allocation pool {pool} is not valid."


class GatewayConflictWithAllocationPools(BadRequest):
    message = "Gateway ip {ip_address} conflicts with allocation pool {pool}."


class InvalidIpForSubnet(BadRequest):
    message = "IP address {ip_address} is not a valid IP for the specified subnet."


class InvalidIpForNetwork(BadRequest):
    message = "IP address {ip_address} is not a valid IP for any of the subnets on the specified network."


class SubnetOverlap(BadRequest):
    message = "Invalid input for operation: Requested subnet with cidr: {cidr} for network: {network_id} " \
              "overlaps with another subnet."

    @property
    def type(self) -> str:
        return "InvalidInput"   # Neutron raises InvalidInput with this message


class HTTPBadRequest(BadRequest):
    """What Neutron's API layer (webob) answers for a body it cannot take: unknown attributes."""
    message = "Bad request."


class InvalidSecurityGroupRule(BadRequest):
    message = "Invalid security group rule: {reason}."


class SecurityGroupRuleParameterConflict(BadRequest):
    message = "Conflicting value ethertype {ethertype} for CIDR {cidr}."


class InvalidPortRange(BadRequest):
    message = "Invalid port range: {reason}."


class InvalidSegmentationId(BadRequest):
    message = "Segmentation id {segmentation_id} is invalid for network type {network_type}: {reason}."


class UnknownPhysicalNetwork(BadRequest):
    message = "Physical network {physical_network} is unknown."


class InvalidNetworkType(BadRequest):
    message = "Network type {network_type} is not supported."


class PortSecurityAndIPRequiredForSecurityGroups(BadRequest):
    message = "Port security must be enabled and port must have an IP address in order to use security groups."


class RouterInterfaceBadRequest(BadRequest):
    message = "{reason}"


class NetworkNotExternal(BadRequest):
    message = "Network {network_id} is not an external network."


# 401 / 403 ----------------------------------------------------------------------------------
class Unauthorized(NeutronError):
    status = 401
    message = "Authentication required."


class PolicyNotAuthorized(NeutronError):
    status = 403
    message = "({action}) is disallowed by policy."


# 404 ----------------------------------------------------------------------------------------
class NotFound(NeutronError):
    status = 404
    message = "An unknown resource was requested."


class HTTPNotFound(NotFound):
    message = "The resource could not be found."


class NetworkNotFound(NotFound):
    message = "Network {id} could not be found."


class SubnetNotFound(NotFound):
    message = "Subnet {id} could not be found."


class PortNotFound(NotFound):
    message = "Port {id} could not be found."


class RouterNotFound(NotFound):
    message = "Router {id} could not be found."


class FloatingIPNotFound(NotFound):
    message = "Floating IP {id} could not be found."


class SecurityGroupNotFound(NotFound):
    message = "Security group {id} does not exist."


class SecurityGroupRuleNotFound(NotFound):
    message = "Security group rule {id} does not exist."


class ChassisNotFound(NotFound):
    message = "Chassis {id} could not be found."


class ExtensionNotFound(NotFound):
    message = "Extension with alias {id} does not exist."


class RouterInterfaceNotFound(NotFound):
    message = "Router {router_id} does not have an interface with id {port_id}."


class RouterInterfaceNotFoundForSubnet(NotFound):
    message = "Router {router_id} has no interface on subnet {subnet_id}."


class ExternalGatewayForFloatingIPNotFound(NotFound):
    message = "External network {external_network_id} is not reachable from subnet {subnet_id}. " \
              "Therefore, cannot associate Port {port_id} with a Floating IP."


# 405 ----------------------------------------------------------------------------------------
class MethodNotAllowed(NeutronError):
    status = 405
    message = "Method not allowed."


# 409 ----------------------------------------------------------------------------------------
class Conflict(NeutronError):
    status = 409
    message = "Conflict."


class InUse(Conflict):
    message = "The resource is in use."


class IpAddressAlreadyAllocated(Conflict):
    message = "IP address {ip} already allocated in subnet {subnet_id}."


class IpAddressGenerationFailure(Conflict):
    message = "No more IP addresses available on network {net_id}."


class MacAddressInUse(InUse):
    message = "Unable to complete operation for network {net_id}. The mac address {mac} is in use."


class NetworkInUse(InUse):
    message = "Unable to complete operation on network {net_id}. There are one or more ports still in use " \
              "on the network."


class SubnetInUse(InUse):
    message = "Unable to complete operation on subnet {subnet_id}: {reason}."


class PortInUse(InUse):
    message = "Unable to complete operation on port {port_id} for network {net_id}. Port already has an " \
              "attached device {device_id}."


class SecurityGroupInUse(InUse):
    message = "Security Group {id} {reason}."


class SecurityGroupRuleExists(InUse):
    message = "Security group rule already exists. Rule id is {rule_id}."


class VlanIdInUse(InUse):
    message = "Unable to create the network. The VLAN {vlan_id} on physical network {physical_network} " \
              "is in use."


class TunnelIdInUse(InUse):
    message = "Unable to create the network. The tunnel ID {tunnel_id} is in use."


class FlatNetworkInUse(InUse):
    message = "Unable to create the flat network. Physical network {physical_network} is in use."


class RouterInUse(InUse):
    message = "Router {router_id} {reason}."


class RouterPortInUse(InUse):
    message = "Port {port_id} has owner {device_owner} and therefore cannot be deleted directly via the " \
              "port API."


class BridgeInUse(InUse):
    message = "{reason}"


class FloatingIPPortAlreadyAssociated(InUse):
    message = "Cannot associate floating IP {floating_ip_address} with port {port_id} using fixed IP " \
              "{fixed_ip}, as that fixed IP already has a floating IP on external network {net_id}."


class ChassisExists(Conflict):
    message = "A chassis with {what} already exists."


# 503 ----------------------------------------------------------------------------------------
class NoNetworkAvailable(NeutronError):
    status = 503
    message = "Unable to create the network. No tenant network is available for allocation."


class ResourceExhausted(NeutronError):
    status = 503
    message = "No free {what} left in the pool."


class ServiceUnavailable(NeutronError):
    """The topology store cannot be reached or written (etcd down, SQLite disk full or locked).
    503, as Neutron answers when its database is away: clients retry it; nothing was changed."""
    status = 503
    message = "The topology store is unavailable, try again later."

