using Gateway.Crypto;
using Gateway.Tunnel;

namespace Gateway.Node.Replay;

/// <summary>
/// The engines' randomness, passed through from the OS CSPRNG, with the last few 32-byte draws
/// remembered (in preallocated arrays) so a handshake's ephemeral private key can be recognised
/// by the public key it yields. Today's engine draws ephemerals from RandomNumberGenerator
/// directly, not from its IRandomSource, so nothing matches and the key log holds static keys
/// only; once the engine draws them here, the key log gains LOCAL_EPHEMERAL_PRIVATE_KEY lines
/// with no change to this code.
/// </summary>
internal sealed class EphemeralKeyRecorder : IRandomSource, IDisposable
{
    private readonly byte[][] _recent = Enumerable.Range(0, 16).Select(_ => GC.AllocateArray<byte>(32, pinned: true)).ToArray();
    private int _next;
    private readonly Lock _gate = new();

    public void Fill(Span<byte> destination)
    {
        SystemRandomSource.Instance.Fill(destination);
        if (destination.Length == 32)
        {
            lock (_gate)
            {
                destination.CopyTo(_recent[_next]);
                _next = (_next + 1) % _recent.Length;
            }
        }
    }

    public uint NextJitterDraw() => SystemRandomSource.Instance.NextJitterDraw();

    /// <summary>Finds the remembered draw that, clamped, is the private key of <paramref name="publicKey"/>.</summary>
    public byte[]? FindPrivate(ReadOnlySpan<byte> publicKey)
    {
        Span<byte> candidate = stackalloc byte[32];
        Span<byte> derived = stackalloc byte[32];
        lock (_gate)
        {
            foreach (var draw in _recent)
            {
                draw.CopyTo(candidate);
                // X25519 clamping (RFC 7748): the engine would clamp the draw before use.
                candidate[0] &= 248;
                candidate[31] &= 127;
                candidate[31] |= 64;
                X25519.DerivePublicKey(candidate, derived);
                if (System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(derived, publicKey))
                {
                    var found = candidate.ToArray();
                    System.Security.Cryptography.CryptographicOperations.ZeroMemory(candidate);
                    return found;
                }
            }
        }
        System.Security.Cryptography.CryptographicOperations.ZeroMemory(candidate);
        return null;
    }

    public void Dispose()
    {
        foreach (var draw in _recent) System.Security.Cryptography.CryptographicOperations.ZeroMemory(draw);
    }
}
