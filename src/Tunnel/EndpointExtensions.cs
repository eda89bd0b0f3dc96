using System.Buffers.Binary;
using Gateway.Datapath;

namespace Gateway.Tunnel;

internal static class EndpointExtensions
{
    /// <summary>default(IpEndpoint) (port 0) means "no endpoint known".</summary>
    public static bool IsSet(this in IpEndpoint endpoint) => endpoint.Port != 0;

    /// <summary>Address bytes then the big-endian port: the input of the cookie MAC (as the kernel does).</summary>
    public static int WriteCookieInput(this in IpEndpoint endpoint, Span<byte> destination)
    {
        int n = endpoint.Address.ByteLength;
        endpoint.Address.WriteBytes(destination);
        BinaryPrimitives.WriteUInt16BigEndian(destination[n..], endpoint.Port);
        return n + 2;
    }
}
