using System.Buffers.Binary;
using System.Security.Cryptography;
using Gateway.Crypto;

namespace Gateway.Node.Tests.Daemon;

/// <summary>
/// Handshake initiations an attacker who knows only the responder's public key can make: random
/// sender index, ephemeral, static and timestamp fields, and a valid mac1 (mac2 zero, no
/// cookie). Each one passes the cheap mac1 check and, unless the responder is under load, costs
/// it a Diffie-Hellman before the unknown static key is refused: the flood the handshake queue
/// and cookies are there for.
/// </summary>
internal static class ForgedInitiations
{
    public const int Size = 148;

    /// <summary><paramref name="count"/> distinct forged initiations for <paramref name="responderPublic"/>.</summary>
    public static byte[][] Make(ReadOnlySpan<byte> responderPublic, int count)
    {
        Span<byte> macKey = stackalloc byte[32];
        var hasher = new Blake2sHasher(32);
        hasher.Update("mac1----"u8);
        hasher.Update(responderPublic);
        hasher.Finish(macKey);
        var messages = new byte[count][];
        for (int i = 0; i < count; i++)
        {
            var m = new byte[Size];
            RandomNumberGenerator.Fill(m.AsSpan(4, 4 + 32 + 48 + 28));
            BinaryPrimitives.WriteUInt32LittleEndian(m, 1); // type 1 and three reserved zero bytes
            Blake2s.Hash(macKey, m.AsSpan(0, Size - 32), m.AsSpan(Size - 32, 16));
            messages[i] = m;
        }
        return messages;
    }
}
