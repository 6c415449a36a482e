"""A fixed-topology mesh and its motion as one glTF 2.0 binary (``.glb``) with morph targets.

The layout, chosen so that Blender (shape keys), three.js / ``<model-viewer>`` and engines that import
glTF play it as it is:

* one mesh of one triangle primitive: POSITION, NORMAL, COLOR_0 (per-vertex colour) and uint32
  indices; an unlit material (``KHR_materials_unlit``, white base colour): the colours are what the
  Gaussians render, lighting included, so a viewer shows them as they are instead of lighting them
  again (a viewer without the extension falls back to the white, rough, non-metal PBR material);
* with a texture (``ds4d-export --mesh-texture``): TEXCOORD_0 and a PNG embedded in the binary buffer as
  the material's ``baseColorTexture`` *instead of* COLOR_0: glTF multiplies COLOR_0 with the base
  colour texture, so writing both would darken every colour to its square; the texture, which holds
  detail between vertices, is the one kept (the PLY frames keep the vertex colours);
* one morph target per frame holding POSITION and NORMAL *deltas* from the base (the canonical mesh),
  named ``frame_NNNN`` in ``mesh.extras.targetNames`` (the name list Blender and three.js read);
* one animation whose ``weights`` sampler has a keyframe per frame at the frame's time in seconds,
  with the one-hot weights of that frame, LINEAR: at frame k target k is fully on and the others off,
  and between two frames the vertices move on the straight line between them;
* the mesh's default weights show the middle frame, so a viewer that ignores animations shows the
  frame the mesh was made from;
* the vertices stay in the scene's own coordinates (z up, the input camera on -y), and the node turns
  them into glTF's (y up, the front facing +z) by a rotation of -90 degrees about x: a viewer shows the
  object upright and facing it, and the accessors read back as the PLY frames' coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
from jaxtyping import Float, Int

GENERATOR = "ds4d-ns ds4d-export"

# glTF enums (glTF 2.0 specification, section 5)
_FLOAT, _UNSIGNED_BYTE, _UNSIGNED_INT = 5126, 5121, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_TRIANGLES = 4
_LINEAR, _LINEAR_MIPMAP_LINEAR, _CLAMP_TO_EDGE = 9729, 9987, 33071

Z_UP_TO_Y_UP = [-math.sqrt(0.5), 0.0, 0.0, math.sqrt(0.5)]
"""The node's rotation (glTF quaternion, x y z w): -90 degrees about x, taking the scene's z up to glTF's y up
and its -y (towards the input camera) to glTF's +z (the front)."""


def srgb_to_linear(colours: np.ndarray) -> np.ndarray:
    """Linear RGB of sRGB values in [0, 1] (the sRGB transfer function, IEC 61966-2-1)."""
    colours = np.asarray(colours, np.float64)
    return np.where(colours <= 0.04045, colours / 12.92, ((colours + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(colours: np.ndarray) -> np.ndarray:
    """sRGB values of linear RGB in [0, 1] (inverse of :func:`srgb_to_linear`)."""
    colours = np.asarray(colours, np.float64)
    return np.where(colours <= 0.0031308, colours * 12.92, 1.055 * np.power(colours, 1 / 2.4) - 0.055)


@dataclass(frozen=True)
class GlbTexture:
    """A base colour texture: per-vertex UVs (glTF's convention, (0, 0) at the image's top-left corner) and the
    PNG bytes of an sRGB image."""

    uvs: Float[np.ndarray, "v 2"]
    png: bytes


def target_name(frame: int, num_frames: int) -> str:
    """Name of the morph target of ``frame``: ``frame_0007`` (at least 4 digits, as the PLY frames)."""
    return f"frame_{frame:0{max(4, len(str(num_frames - 1)))}d}"


def animated_glb(
    base_positions: Float[np.ndarray, "v 3"],
    faces: Int[np.ndarray, "f 3"],
    frame_positions: Float[np.ndarray, "t v 3"],
    frame_times_s: Sequence[float],
    colours: Float[np.ndarray, "v 3"],
    base_normals: Float[np.ndarray, "v 3"],
    frame_normals: Optional[Float[np.ndarray, "t v 3"]] = None,
    default_frame: int = 0,
    name: str = "ds4d",
    texture: Optional[GlbTexture] = None,
) -> bytes:
    """The bytes of a ``.glb`` of the mesh animated through ``frame_positions`` at ``frame_times_s``.

    Args:
        base_positions, faces: the mesh at rest (the morph targets are deltas from it).
        frame_positions: vertex positions at each frame (same vertices, same order).
        frame_times_s: each frame's time in seconds, strictly increasing, starting at or after 0.
        colours: per-vertex colour in [0, 1] as displayed (sRGB, as renders and PLY files hold it);
            written linear, as glTF's COLOR_0 is.
        base_normals, frame_normals: unit vertex normals at rest and per frame (the latter optional:
            without it the targets move positions only).
        default_frame: the frame whose weight is 1 in the mesh's default weights.
        name: the mesh's and node's name.
        texture: UVs and a base colour image; with it, ``colours`` are not written (see the module's notes).
    """
    import pygltflib as g

    num_frames, num_vertices = frame_positions.shape[:2]
    times = np.asarray(frame_times_s, np.float32)
    if base_positions.shape != (num_vertices, 3) or colours.shape != (num_vertices, 3):
        raise ValueError(
            f"base_positions and colours must have shape ({num_vertices}, 3), "
            f"got {base_positions.shape} and {colours.shape}"
        )
    if times.shape != (num_frames,) or (num_frames > 1 and not np.all(np.diff(times) > 0)) or times[0] < 0:
        raise ValueError(f"need {num_frames} increasing non-negative frame times, got {times.tolist()}")
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0 or faces.max() >= num_vertices:
        raise ValueError(f"faces must be [F, 3] indices below {num_vertices}")

    blob = bytearray()
    views: List[g.BufferView] = []
    accessors: List[g.Accessor] = []

    def add(array: np.ndarray, accessor_type: str, component: int, target: Optional[int], **extra) -> int:
        """Append ``array`` to the buffer (4-byte aligned) as a new view and accessor; returns the accessor."""
        data = np.ascontiguousarray(array).tobytes()
        blob.extend(b"\0" * (-len(blob) % 4))
        views.append(g.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(data), target=target))
        blob.extend(data)
        count = array.shape[0]
        accessors.append(
            g.Accessor(bufferView=len(views) - 1, componentType=component, count=count, type=accessor_type, **extra)
        )
        return len(accessors) - 1

    def vec3(array: np.ndarray, bounds: bool = False) -> int:
        array = np.asarray(array, np.float32)
        extra = {"min": array.min(axis=0).tolist(), "max": array.max(axis=0).tolist()} if bounds else {}
        return add(array, g.VEC3, _FLOAT, _ARRAY_BUFFER, **extra)  # POSITION accessors must carry min/max

    attributes = g.Attributes(POSITION=vec3(base_positions, bounds=True), NORMAL=vec3(base_normals))
    material = g.Material(
        name="vertex colour",
        pbrMetallicRoughness=g.PbrMetallicRoughness(
            baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.0, roughnessFactor=1.0
        ),
        doubleSided=True,  # a thin part may show its back through the decimation's small errors
        extensions={"KHR_materials_unlit": {}},
    )
    images: List[g.Image] = []
    if texture is None:
        # 8-bit normalised RGBA: a quarter of the floats' size; RGB alone would break the 4-byte alignment
        # that vertex attributes need
        attributes.COLOR_0 = add(
            np.concatenate(
                [np.round(srgb_to_linear(np.clip(colours, 0, 1)) * 255), np.full((num_vertices, 1), 255)], axis=1
            ).astype(np.uint8),
            g.VEC4,
            _UNSIGNED_BYTE,
            _ARRAY_BUFFER,
            normalized=True,
        )
    else:
        if texture.uvs.shape != (num_vertices, 2):
            raise ValueError(f"texture UVs must have shape ({num_vertices}, 2), got {texture.uvs.shape}")
        attributes.TEXCOORD_0 = add(np.asarray(texture.uvs, np.float32), g.VEC2, _FLOAT, _ARRAY_BUFFER)
        blob.extend(b"\0" * (-len(blob) % 4))
        views.append(g.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(texture.png)))  # no target: an image
        blob.extend(texture.png)
        images.append(g.Image(bufferView=len(views) - 1, mimeType="image/png"))
        material.name = "baked texture"
        material.pbrMetallicRoughness.baseColorTexture = g.TextureInfo(index=0, texCoord=0)
    indices = add(
        faces.astype(np.uint32).reshape(-1),
        g.SCALAR,
        _UNSIGNED_INT,
        _ELEMENT_ARRAY_BUFFER,
        min=[int(faces.min())],
        max=[int(faces.max())],
    )
    targets = []
    for frame in range(num_frames):
        target = {"POSITION": vec3(frame_positions[frame] - base_positions, bounds=True)}
        if frame_normals is not None:
            target["NORMAL"] = vec3(frame_normals[frame] - base_normals)
        targets.append(target)
    weights_out = np.eye(num_frames, dtype=np.float32).reshape(-1)  # keyframe k: target k at 1, the others 0
    times_accessor = add(times, g.SCALAR, _FLOAT, None, min=[float(times.min())], max=[float(times.max())])
    weights_accessor = add(weights_out, g.SCALAR, _FLOAT, None)
    default_weights = [0.0] * num_frames
    default_weights[default_frame] = 1.0

    gltf = g.GLTF2(
        asset=g.Asset(version="2.0", generator=GENERATOR),
        extensionsUsed=["KHR_materials_unlit"],
        scene=0,
        scenes=[g.Scene(nodes=[0])],
        nodes=[g.Node(mesh=0, name=name, rotation=Z_UP_TO_Y_UP)],
        meshes=[
            g.Mesh(
                name=name,
                primitives=[
                    g.Primitive(attributes=attributes, indices=indices, material=0, mode=_TRIANGLES, targets=targets)
                ],
                weights=default_weights,
                extras={"targetNames": [target_name(k, num_frames) for k in range(num_frames)]},
            )
        ],
        materials=[material],
        images=images,
        # trilinear filtering; clamped at the edges, since the atlas does not tile
        samplers=[
            g.Sampler(magFilter=_LINEAR, minFilter=_LINEAR_MIPMAP_LINEAR, wrapS=_CLAMP_TO_EDGE, wrapT=_CLAMP_TO_EDGE)
        ]
        if images
        else [],
        textures=[g.Texture(sampler=0, source=0)] if images else [],
        animations=[
            g.Animation(
                name="clip",
                samplers=[g.AnimationSampler(input=times_accessor, output=weights_accessor, interpolation="LINEAR")],
                channels=[g.AnimationChannel(sampler=0, target=g.AnimationChannelTarget(node=0, path="weights"))],
            )
        ],
        accessors=accessors,
        bufferViews=views,
        buffers=[g.Buffer(byteLength=len(blob))],
    )
    gltf.set_binary_blob(bytes(blob))
    return b"".join(gltf.save_to_bytes())
