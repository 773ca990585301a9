"""Networks: ViT encoders, the prompt-conditioned teacher, the official-architecture student, checkpoints."""

from metricanything.models.checkpoint import from_pretrained, save_pretrained
from metricanything.models.student import Student, StudentConfig, student_config
from metricanything.models.teacher import Teacher, TeacherConfig, teacher_config
from metricanything.models.vit import VisionTransformer, ViTConfig, vit_config

__all__ = [
    "Student", "StudentConfig", "student_config", "Teacher", "TeacherConfig", "teacher_config",
    "VisionTransformer", "ViTConfig", "vit_config", "from_pretrained", "save_pretrained",
]
