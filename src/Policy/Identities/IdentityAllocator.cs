using System.Text.Json;

namespace Gateway.Policy;

/// <summary>
/// Hands out security identities per distinct label set: the same labels always get the same
/// number. Reserved identities keep Cilium's numbers; endpoint label sets get 256 and up (24 bits).
/// With an allocation store (a JSON file of canonical label set -> id) numbers survive restarts.
/// Thread-safe; allocation is a control-plane operation, not a per-packet one.
/// </summary>
public sealed class IdentityAllocator
{
    private readonly object _gate = new();
    private readonly Dictionary<LabelSet, SecurityIdentity> _byLabels = new();
    private readonly Dictionary<uint, SecurityIdentity> _byId = new();
    private readonly Dictionary<string, uint> _stored = new(StringComparer.Ordinal);
    private readonly HashSet<uint> _storedIds = new();
    private readonly string? _storePath;
    private uint _next = ReservedIdentity.FirstAllocated;

    /// <param name="storePath">Optional allocation store; created on first allocation if missing.</param>
    public IdentityAllocator(string? storePath = null)
    {
        _storePath = storePath;
        foreach (var id in ReservedIdentity.All)
        {
            var identity = new SecurityIdentity(id, SecurityIdentity.ReservedLabels(id), IdentityKind.Reserved);
            _byLabels[identity.Labels] = identity;
            _byId[id] = identity;
        }
        if (storePath is not null && File.Exists(storePath))
        {
            LoadStore(storePath);
        }
    }

    private void LoadStore(string path)
    {
        Dictionary<string, uint>? entries;
        try
        {
            entries = JsonSerializer.Deserialize<Dictionary<string, uint>>(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: identity store is not a JSON object of label set -> id: {e.Message}", e);
        }
        foreach (var (labels, id) in entries ?? [])
        {
            if (id < ReservedIdentity.FirstAllocated || id > ReservedIdentity.MaxAllocated || !_storedIds.Add(id))
            {
                throw new InvalidDataException($"{path}: identity {id} for '{labels}' is out of range or used twice");
            }
            _stored[labels] = id;
        }
    }

    /// <summary>The identity of a label set: reserved if it is exactly one reserved label, else allocated.</summary>
    public SecurityIdentity Allocate(LabelSet labels)
    {
        ArgumentNullException.ThrowIfNull(labels);
        lock (_gate)
        {
            if (_byLabels.TryGetValue(labels, out var existing))
            {
                return existing;
            }
            if (!_stored.TryGetValue(labels.Canonical, out uint id))
            {
                while (_storedIds.Contains(_next) || _byId.ContainsKey(_next))
                {
                    _next++;
                }
                if (_next > ReservedIdentity.MaxAllocated)
                {
                    throw new InvalidOperationException("All 24-bit identities are in use.");
                }
                id = _next++;
                _stored[labels.Canonical] = id;
                _storedIds.Add(id);
                SaveStore();
            }
            var identity = new SecurityIdentity(id, labels, IdentityKind.Endpoint);
            _byLabels[labels] = identity;
            _byId[id] = identity;
            return identity;
        }
    }

    /// <summary>
    /// Binds a label set to a number allocated elsewhere (cluster mode: etcd allocates identities
    /// so that every node agrees). A later <see cref="Allocate"/> of these labels returns it. A
    /// binding the cluster changed (the number now means other labels) replaces the old one.
    /// </summary>
    public SecurityIdentity Assign(LabelSet labels, uint id)
    {
        ArgumentNullException.ThrowIfNull(labels);
        if (id < ReservedIdentity.FirstAllocated || id > ReservedIdentity.MaxAllocated)
        {
            throw new ArgumentOutOfRangeException(nameof(id), id, "Allocated identities are 256 to 2^24-1.");
        }
        lock (_gate)
        {
            if (_byLabels.TryGetValue(labels, out var existing))
            {
                if (existing.Id == id)
                {
                    return existing;
                }
                if (existing.Kind == IdentityKind.Reserved)
                {
                    throw new ArgumentException($"'{labels}' is the reserved identity {existing.Id}.", nameof(labels));
                }
                _byId.Remove(existing.Id);
            }
            if (_byId.TryGetValue(id, out var previous))
            {
                _byLabels.Remove(previous.Labels);
            }
            var identity = new SecurityIdentity(id, labels, IdentityKind.Endpoint);
            _byLabels[labels] = identity;
            _byId[id] = identity;
            return identity;
        }
    }

    public bool TryGet(uint id, out SecurityIdentity identity)
    {
        lock (_gate)
        {
            return _byId.TryGetValue(id, out identity!);
        }
    }

    /// <summary>Every identity handed out so far plus the reserved ones.</summary>
    public IReadOnlyList<SecurityIdentity> Identities
    {
        get
        {
            lock (_gate)
            {
                return _byId.Values.OrderBy(i => i.Id).ToArray();
            }
        }
    }

    private void SaveStore()
    {
        if (_storePath is null)
        {
            return;
        }
        // Write to a temporary file and rename so a crash never leaves a torn store.
        string tmp = _storePath + ".tmp";
        File.WriteAllText(tmp, JsonSerializer.Serialize(_stored.OrderBy(e => e.Value).ToDictionary(e => e.Key, e => e.Value),
            new JsonSerializerOptions { WriteIndented = true }));
        File.Move(tmp, _storePath, overwrite: true);
    }
}
