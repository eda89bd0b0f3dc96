using System.Net.Sockets;
using System.Text;

namespace Gateway.Node.Uapi;

/// <summary>Talks to a running node (or wireguard-go) over its UAPI socket, as `wg` does.</summary>
public static class UapiClient
{
    public static string SocketPath(string interfaceName, string directory = UapiSocketServer.DefaultDirectory) =>
        Path.Combine(directory, interfaceName + ".sock");

    /// <summary>Interfaces with a UAPI socket in <paramref name="directory"/>, sorted.</summary>
    public static IReadOnlyList<string> ListInterfaces(string directory = UapiSocketServer.DefaultDirectory)
    {
        if (!Directory.Exists(directory))
        {
            return [];
        }
        return Directory.EnumerateFiles(directory, "*.sock")
            .Select(p => Path.GetFileNameWithoutExtension(p))
            .Order(StringComparer.Ordinal)
            .ToList();
    }

    /// <summary>Sends one request block (without its final empty line) and returns the response
    /// up to and including the errno line. Throws IOException when the node is unreachable.</summary>
    public static string Exchange(string interfaceName, string request, string directory = UapiSocketServer.DefaultDirectory, TimeSpan? timeout = null)
    {
        string path = SocketPath(interfaceName, directory);
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.ReceiveTimeout = socket.SendTimeout = (int)(timeout ?? TimeSpan.FromSeconds(10)).TotalMilliseconds;
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException e)
        {
            throw new IOException($"cannot reach interface '{interfaceName}' at {path}: {e.Message}", e);
        }
        using var stream = new NetworkStream(socket, ownsSocket: false);
        byte[] bytes = Encoding.UTF8.GetBytes(request.EndsWith('\n') ? request + "\n" : request + "\n\n");
        stream.Write(bytes);
        using var reader = new StreamReader(stream, new UTF8Encoding(false));
        var response = new StringBuilder();
        try
        {
            string? line;
            while ((line = reader.ReadLine()) is not null && line.Length > 0)
            {
                response.Append(line).Append('\n');
            }
        }
        catch (IOException e)
        {
            throw new IOException($"interface '{interfaceName}' did not answer: {e.Message}", e);
        }
        if (!response.ToString().Contains("errno=", StringComparison.Ordinal))
        {
            throw new IOException($"interface '{interfaceName}' closed the connection without an answer");
        }
        return response.ToString();
    }
}
